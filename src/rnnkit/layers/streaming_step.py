"""``Recurrent.step()``: streaming one time step at a time (a mixin of :class:`~rnnkit.Recurrent`).

The fast path is one C++ call for the whole stack (:mod:`rnnkit.executors.streaming`); a stream that
passes back the state the last fast step returned keeps a :class:`StreamLane` (what that step was
decided on), so the next step only re-checks what can have changed. The Python path runs the cells'
own ``step`` (the specification; differentiable).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.cells.base import State
from rnnkit.executors.streaming import STEP_PRECISIONS, fast_step_refusal, stepper
from rnnkit.layers.graph_capture import capture_mode


class StreamLane:
    """What the last fast step was decided on; valid while the caller passes back ``state``."""

    __slots__ = ("batched", "dtype", "param_ids", "parts", "shape", "state", "stepper", "zoneout")

    def __init__(self, state: Any, shape: torch.Size, dtype: torch.dtype, stepper: Any,
                 zoneout: tuple[float, ...], batched: bool, parts: tuple[Tensor, ...],
                 param_ids: tuple[int, ...]) -> None:
        self.state = state  # what step() returned: the next call passes it back
        self.shape, self.dtype = shape, dtype  # the input's
        self.stepper = stepper  # the C++ Stepper bound to the parameters
        self.zoneout = zoneout  # the module's zoneout tuple (identity: replaced when changed)
        self.batched = batched
        self.parts = parts  # the state components (L, B, n) the C++ step takes
        self.param_ids = param_ids  # ids of the parameters the Stepper is bound to


def _step_result(out: list[Tensor], batched: bool) -> tuple[Tensor, Any, tuple[Tensor, ...]]:
    """A step's ``[y, h, (c)]`` (components (L, B, n), from the C++ or the Python step) as ``step()``
    returns it: ``(y, state, parts)``, where ``parts`` are the (L, B, n) components the next fast step
    takes (the state is their squeezed views when the input was unbatched)."""
    parts = tuple(out[1:])
    y, final = (out[0], parts) if batched else (out[0].squeeze(0), tuple(p.squeeze(1) for p in parts))
    return y, (final if len(final) > 1 else final[0]), parts



class StreamingStep:
    """``step()`` and the caches it keeps on the module (dropped whenever a parameter changes)."""

    @property
    def step_precision(self) -> str:
        """``"float"`` (the module's dtype) or ``"int8"``: the C++ step on int8 copies of the weights
        (:func:`rnnkit.quantize_step`). Setting it drops the streaming caches."""
        return self.__dict__.get("_step_precision", "float")

    @step_precision.setter
    def step_precision(self, value: str) -> None:
        if value not in STEP_PRECISIONS:
            raise ValueError(f"step_precision must be one of {STEP_PRECISIONS}, got {value!r}")
        self.__dict__["_step_precision"] = value
        self._drop_stream_caches()

    def step(
        self, x_t: Tensor, state: Tensor | tuple[Tensor, ...] | None = None
    ) -> tuple[Tensor, Tensor | tuple[Tensor, ...]]:
        """Advance every layer by one time step: ``x_t`` (B, I) or (I,) -> ``(y_t, new_state)``.

        Equals ``forward`` over a sequence fed one step at a time. Runs with evaluation semantics for
        the regularisers (zoneout by its expectation), so stochastic regularisers need ``eval()``.
        Without autograd (``torch.no_grad()``/``inference_mode()``, or nothing requiring grad) on CPU,
        with backend "auto" or "fused_cpu", each layer's step is one C++ call
        (:mod:`rnnkit.executors.streaming`); otherwise the cells' Python ``step`` runs. With
        ``step_precision = "int8"`` (:func:`rnnkit.quantize_step`) only the C++ call runs, on int8
        weights; a step it cannot take raises ``ValueError``.
        """
        # A stream passes back the state the last fast step returned, with an input like the last
        # one: then nothing that decides the path can have changed but what is checked here (the
        # lane is dropped when a parameter is registered, removed or converted, and the parameter
        # ids catch a swap behind nn.Module's back; in-place edits of the weights or of the state
        # tensors are read by the call). ~1.2 us of Python instead of ~2 at H=4.
        lane: StreamLane | None = self.__dict__.get("_stream_lane")
        if (lane is not None and state is lane.state and x_t.shape == lane.shape and x_t.dtype is lane.dtype
                and x_t.is_cpu and not torch.is_grad_enabled() and not self.training
                and self.zoneout is lane.zoneout and self.backend in ("auto", "fused_cpu")
                and tuple(map(id, self._parameters.values())) == lane.param_ids):  # functional_call swaps
            y, lane.state, lane.parts = _step_result(
                lane.stepper.step(x_t if lane.batched else x_t.view(1, -1), *lane.parts), lane.batched)
            return y, lane.state  # the rest of the lane still holds
        if self.bidirectional:
            raise ValueError("step() streams forward in time; a bidirectional layer needs the whole sequence")
        if self.training and (
            self.dropout or self.variational_dropout or self.recurrent_dropout
            or self.weight_drop or any(self.zoneout)
        ):
            raise ValueError(
                "step() runs with evaluation semantics; call .eval() on a module with dropout, "
                "zoneout or weight drop before streaming"
            )
        if x_t.dim() not in (1, 2):
            raise ValueError(f"step() expects x_t of shape (batch, input_size) or (input_size,), got {x_t.dim()}D")
        batched = x_t.dim() == 2
        inp = x_t if batched else x_t.view(1, -1)  # (B, I); no further views: each costs ~1 us
        if inp.shape[-1] != self.input_size:
            raise ValueError(f"x_t.size(-1) must be {self.input_size}, got {inp.shape[-1]}")
        hx = self._prepare_state(state, inp.shape[0], inp, batched)
        self.__dict__.pop("_stream_lane", None)
        # a tracer cannot record the C++ step: the Python step is recordable and right for any batch
        refusal = (f"backend={self.backend!r}" if self.backend not in ("auto", "fused_cpu")
                   else "a tracer records the call" if capture_mode() is not None
                   else fast_step_refusal(self, inp, hx))
        if refusal is None:
            # one C++ call for the whole stack (rnnkit.executors.streaming); same results, no autograd
            made = stepper(self)
            return self._finish_fast_step(made.step(inp, *hx), batched, x_t, made)
        if self.step_precision == "int8":  # never a silently different precision
            raise ValueError(f"step_precision='int8' runs only on the fast C++ step, which refuses: {refusal}")
        y, final = self._python_step(inp, hx)
        y, returned, _ = _step_result([y, *final], batched)
        return y, returned

    def _finish_fast_step(self, out: list[Tensor], batched: bool, x_t: Tensor, made) -> tuple[Tensor, Any]:
        """``step()``'s result from the C++ call's ``[y, h, (c)]``, and the lane for the next step
        (which may reuse the parts (L, B, n) it returns without checking them again)."""
        y, returned, parts = _step_result(out, batched)
        cached = self.__dict__.get("_fast_stepper")
        # a lane only for a Stepper bound to the parameters themselves (contiguous; not bf16's copies,
        # which the full path re-validates by version at every step)
        if cached is not None and cached[2] is made and cached[4] is None:
            # the next fast step replaces the state and its parts in place
            self.__dict__["_stream_lane"] = StreamLane(returned, x_t.shape, x_t.dtype, made, self.zoneout,
                                                       batched, parts, cached[0])
        return y, returned

    # the streaming caches hold a C++ object bound to the current parameters: never copied or
    # pickled, and dropped when a parameter is replaced, removed or converted
    _STREAM_CACHES = ("_stream_lane", "_fast_stepper", "_fast_step_static")

    def _drop_stream_caches(self) -> None:
        for key in self._STREAM_CACHES:
            self.__dict__.pop(key, None)

    def register_parameter(self, name: str, param: nn.Parameter | None) -> None:
        super().register_parameter(name, param)
        self._drop_stream_caches()

    def __delattr__(self, name: str) -> None:  # e.g. torch.nn.utils.parametrize taking a weight over
        self._drop_stream_caches()
        super().__delattr__(name)

    def _apply(self, fn, recurse: bool = True):
        self._drop_stream_caches()
        return super()._apply(fn, recurse)

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())  # nn.Module's drops a compiled call too
        for key in self._STREAM_CACHES:
            state.pop(key, None)
        return state

    def _python_step(self, inp: Tensor, hx: State) -> tuple[Tensor, State]:
        """``step()`` through the cells' Python ``step`` (the specification; differentiable)."""
        finals: list[State] = []
        for layer, spec in enumerate(self.cells):
            params = self.layer_params(layer)
            prev = tuple(s[layer] for s in hx)
            new = spec.step(params, spec.project_input(params, inp), prev)
            new = tuple(
                n if p == 0 else torch.lerp(n, old, p)
                for n, old, p in zip(new, prev, self.zoneout, strict=True)
            )
            finals.append(new)
            out = new[0]
            if self.residual and layer > 0:
                out = out + inp
            inp = out
        return inp, tuple(torch.stack(parts) for parts in zip(*finals, strict=True))

