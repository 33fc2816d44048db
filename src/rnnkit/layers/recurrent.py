"""``Recurrent``: any cell, stacked and bidirectional, with the regularisers, lengths and streaming.

What is common to all cells lives here: layout (batch_first, unbatched, PackedSequence), stacking,
directions, dropout masks, lengths with padding-aware reversal, initial and final state, per-step
states and ``step()`` for streaming. The time loop itself belongs to an executor, chosen per call by
:mod:`rnnkit.executors.dispatch`.
"""

from __future__ import annotations

import contextlib
import numbers
import warnings
from collections.abc import Iterator
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnkit.cells.base import CellSpec, InitOptions, Params, State
from rnnkit.cells.registry import cell_builder, options_repr
from rnnkit.executors.base import RunRequest, StepMasks, Sweep
from rnnkit.executors.dispatch import ExecutionPlan, get_executor, plan_stack, validate_backend
from rnnkit.executors.kernel_families import kernel_options
from rnnkit.executors.native import NativeExecutor, flat_weights, torch_mode
from rnnkit.executors.recompute import is_batched
from rnnkit.layers.graph_capture import capture_mode, refuse_scripting
from rnnkit.layers.regularizers import check_probability, dropout_mask, zoneout_weights
from rnnkit.layers.streaming_step import StreamingStep


class _Call(NamedTuple):
    """A forward call's arguments after the checks: ``x`` (T, B, I), state components (L*D, B, n)."""

    x: Tensor
    hx: State
    lengths: Tensor | None
    batched: bool
    packed_info: tuple[Tensor | None, Tensor | None] | None


class Recurrent(StreamingStep, nn.Module):
    """A stack of recurrent layers of one cell family.

    Args:
        cell: the family: a registered name ("rnn_tanh", "lstm", "gru", "indrnn", ... see
            ``rnnkit.cells.cell_names()``), a :class:`~rnnkit.cells.CellSpec` class, or a spec whose
            options serve as defaults.
        input_size, hidden_size, num_layers: as torch.nn.
        bias, batch_first, dropout, bidirectional, proj_size: as torch.nn (``dropout`` between layers).
        **cell_options: the family's own options, e.g. ``peephole``/``layer_norm`` (LSTM),
            ``activation`` (minGRU), ``recurrent_max`` (IndRNN): the fields of its spec class, see
            its docstring for the equations. An option another family has, left off, is accepted.
        forget_bias, init, chrono_tmax: initialisation (:class:`rnnkit.cells.InitOptions`).
        variational_dropout: locked dropout on every layer's input, one mask per sequence.
        recurrent_dropout: dropout on ``h_{t-1}`` where it meets ``W_hh``, one mask per sequence.
        zoneout: probability of keeping each state unit's previous value; a float for every state
            component, or a tuple per component (``(p_h, p_c)`` for the LSTM).
        weight_drop: DropConnect on every ``weight_hh``, one mask per forward pass.
        residual: add each layer's input to its output, from the second layer on.
        backend: "auto" or an executor name ("reference", "native", ...).

    ``forward(input, state=None, *, lengths=None, mask=None, return_states=False)`` returns
    ``(output, final_state)`` with torch.nn's shapes (``final_state`` is ``(h_n, c_n)`` for the LSTM,
    ``h_n`` otherwise), plus per-step states when ``return_states`` is true.
    """

    def __init__(
        self,
        cell: str | type[CellSpec] | CellSpec,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        forget_bias: float | None = None,
        init: str = "torch",
        chrono_tmax: float = 1000.0,
        variational_dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        zoneout: float | tuple[float, ...] = 0.0,
        weight_drop: float = 0.0,
        residual: bool = False,
        backend: str = "auto",
        device: Any = None,
        dtype: torch.dtype | None = None,
        **cell_options: Any,
    ) -> None:
        super().__init__()
        # the order of these checks (and their messages) follows torch.nn.RNNBase
        if (
            not isinstance(dropout, numbers.Number)
            or isinstance(dropout, bool)
            or not 0 <= dropout <= 1
        ):
            raise ValueError(
                "dropout should be a number in range [0, 1] representing the probability of an "
                "element being zeroed"
            )
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero "
                "dropout expects num_layers greater than 1, but got "
                f"dropout={dropout} and num_layers={num_layers}",
                stacklevel=2,
            )
        if not isinstance(hidden_size, int) or isinstance(hidden_size, bool):
            raise TypeError(f"hidden_size should be of type int, got: {type(hidden_size).__name__}")
        if hidden_size <= 0:
            raise ValueError("hidden_size must be greater than zero")
        if num_layers <= 0:
            raise ValueError("num_layers must be greater than zero")
        if proj_size:  # a torch.nn argument, one of the LSTM's cell options here
            cell_options["proj_size"] = proj_size
        cell_name, build_cell = cell_builder(cell, **cell_options)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.init_options = InitOptions(init, forget_bias, chrono_tmax)
        self.variational_dropout = check_probability("variational_dropout", variational_dropout)
        self.recurrent_dropout = check_probability("recurrent_dropout", recurrent_dropout)
        self.weight_drop = check_probability("weight_drop", weight_drop)
        self.residual = bool(residual)
        self.backend = validate_backend(backend)

        first = build_cell(input_size, hidden_size, bias)
        self.cell_name: str = cell_name or first.name
        self.num_directions = 2 if bidirectional else 1
        layer_input = first.output_size * self.num_directions
        self.cells: list[CellSpec] = [first] + [
            build_cell(layer_input, hidden_size, bias) for _ in range(num_layers - 1)
        ]
        for spec in self.cells:
            # the kernels' options as strings, cached now: torch.compile(dynamic=True) traces a float
            # option as a symbol, and str() of one cannot be traced
            kernel_options(spec)
        self.proj_size: int = getattr(first, "proj_size", 0)
        self.zoneout = self._check_zoneout(zoneout, first)
        self._state_sizes = first.state_sizes()  # read on every streaming step()
        if "weight_hh" not in first.param_shapes():
            for name in ("recurrent_dropout", "weight_drop"):
                if getattr(self, name):
                    raise ValueError(f"{name} acts on weight_hh; the {self.cell_name!r} cell has none")

        factory = {"device": device, "dtype": dtype}
        self._param_names: list[list[dict[str, str]]] = []
        for layer, spec in enumerate(self.cells):
            directions = []
            for direction in range(self.num_directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                names = {}
                for name, shape in spec.param_shapes().items():
                    setattr(self, name + suffix, nn.Parameter(torch.empty(shape, **factory)))
                    names[name] = name + suffix
                directions.append(names)
            self._param_names.append(directions)
        self.reset_parameters()

    # ---- construction helpers -------------------------------------------------------------
    @staticmethod
    def _check_zoneout(zoneout: float | tuple[float, ...], cell: CellSpec) -> tuple[float, ...]:
        n = len(cell.state_sizes())
        values = tuple(zoneout) if isinstance(zoneout, (tuple, list)) else (zoneout,) * n
        if len(values) != n:
            raise ValueError(
                f"zoneout for the {cell.name!r} cell takes one probability or {n} (one per state "
                f"component), got {len(values)}"
            )
        return tuple(check_probability("zoneout", p) for p in values)

    def reset_parameters(self) -> None:
        """Initialise every layer and direction (torch's scheme, then ``init``'s changes)."""
        for layer, spec in enumerate(self.cells):
            for direction in range(self.num_directions):
                spec.reset_parameters(self.layer_params(layer, direction), self.init_options)

    def layer_params(self, layer: int, direction: int = 0) -> Params:
        """The parameters of one layer and direction under their cell names (``weight_ih``, ...)."""
        return {k: getattr(self, v) for k, v in self._param_names[layer][direction].items()}

    @property
    def cell(self) -> CellSpec:
        """The first layer's cell spec."""
        return self.cells[0]

    @property
    def output_size(self) -> int:
        return self.cells[-1].output_size * self.num_directions

    @property
    def _state_is_tuple(self) -> bool:
        return len(self._state_sizes) > 1

    def extra_repr(self) -> str:
        s = f"{self.cell_name!r}, {self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        return s + self._options_repr()

    def _options_repr(self) -> str:
        """The rnnkit options that differ from their defaults, for ``repr``."""
        s = options_repr(self.cell, self.init_options)
        for name in ("variational_dropout", "recurrent_dropout", "weight_drop"):
            if getattr(self, name):
                s += f", {name}={getattr(self, name)}"
        if any(self.zoneout):
            z = self.zoneout
            s += f", zoneout={z[0] if len(set(z)) == 1 else z}"
        if self.residual:
            s += ", residual=True"
        if self.backend != "auto":
            s += f", backend={self.backend!r}"
        return s

    # ---- planning ---------------------------------------------------------------------------
    def _in_loop_masks(self) -> bool:
        """Whether something acts inside the time loop (so torch's kernels cannot run it)."""
        return any(self.zoneout) or (self.training and self.recurrent_dropout > 0)

    def plan(
        self, device: torch.device | None = None, dtype: torch.dtype | None = None,
        return_states: bool = False, batch: int | None = None, vmapped: bool = False,
        has_lengths: bool = False,
    ) -> ExecutionPlan:
        """Which executors a forward pass would use now (depends on device, dtype, mode and, for auto,
        the batch size when given, whether the call passes ``lengths`` (``has_lengths``), whether it
        runs inside ``torch.func.vmap``, and on the transforms
        active at the call: ``torch.jit.trace``/``torch.export``, ``torch.autocast``).
        :meth:`plan_for` gives the plan of a given call."""
        ref = self.weight_ih_l0
        device = device or ref.device
        request = RunRequest(
            device, dtype or ref.dtype, self._in_loop_masks(), return_states, batch, vmapped,
            capture_mode(), torch.is_autocast_enabled(device.type), has_lengths,
        )
        return plan_stack(self.cells, self.num_directions, self.backend, request, self._layers_joined_by())

    def plan_for(
        self,
        input: Tensor | PackedSequence,
        state: Tensor | tuple[Tensor, ...] | None = None,
        *,
        lengths: Tensor | None = None,
        mask: Tensor | None = None,
        return_states: bool = False,
    ) -> ExecutionPlan:
        """The plan ``forward`` would follow for this call (same arguments), built as it builds it;
        nothing runs. Raises what ``forward`` would raise for bad arguments."""
        call = self._prepare_call(input, state, lengths, mask)
        return self._call_plan(call.x, call.hx, return_states, call.lengths)

    def _call_plan(self, x: Tensor, hx: State, return_states: bool, lengths: Tensor | None = None) -> ExecutionPlan:
        """The plan of a call with time-major ``x`` (T, B, I), state components ``hx`` and ``lengths``."""
        vmapped = any(map(is_batched, (x, *hx, *self._parameters.values())))
        return self.plan(x.device, x.dtype, return_states, x.shape[1], vmapped, lengths is not None)

    def _layers_joined_by(self) -> str | None:
        """What couples the layers beyond torch.nn's inter-layer dropout (torch's whole-stack kernel
        cannot run it), or None."""
        if self.training and self.variational_dropout > 0:
            return "variational dropout masks each layer's input"
        if self.residual:
            return "residual connections join layers"
        return None

    # ---- forward ----------------------------------------------------------------------------
    def forward(
        self,
        input: Tensor | PackedSequence,
        state: Tensor | tuple[Tensor, ...] | None = None,
        *,
        lengths: Tensor | None = None,
        mask: Tensor | None = None,
        return_states: bool = False,
    ):
        x, hx, lengths, batched, packed_info = self._prepare_call(input, state, lengths, mask)
        outputs, finals, states = self._run(x, hx, lengths, return_states)

        if packed_info is not None:
            output: Tensor | PackedSequence = _repack(outputs, lengths, *packed_info)
        elif not batched:
            output = outputs.squeeze(1)
        elif self.batch_first:
            output = outputs.transpose(0, 1)
        else:
            output = outputs
        final = tuple(s if batched else s.squeeze(1) for s in finals)
        final_out = final if self._state_is_tuple else final[0]
        if not return_states:
            return output, final_out
        assert states is not None
        if not batched:
            states = tuple(s.squeeze(2) for s in states)
        elif self.batch_first and packed_info is None:
            states = tuple(s.transpose(1, 2) for s in states)
        return output, final_out, states

    def _run(
        self, x: Tensor, hx: State, lengths: Tensor | None, return_states: bool
    ) -> tuple[Tensor, State, tuple[Tensor, ...] | None]:
        """Time-major core: x (T, B, I), hx components (L*D, B, n)."""
        observer = self.__dict__.get("_observer")
        if observer is not None:  # diagnostics: every layer on the reference loop, with hooks
            reference = get_executor("reference")

            def run_layer(layer: int, direction: int, spec: CellSpec, params, x, state0, sweep: Sweep):
                return reference.run_sweep(spec, params, x, state0, sweep, observer.layer(layer, direction, spec))

            result = self._run_layers(run_layer, observer.input(x), hx, lengths, return_states)
            observer.finished(x, hx, lengths, result[0])
            return result
        plan = self._call_plan(x, hx, return_states, lengths)
        if plan.capture == "torch.jit.trace":
            self._check_traceable(plan)
        if plan.autocast and not plan.whole_stack and torch_mode(self.cell) == "LSTM" and x.is_cpu:
            # CPU autocast runs torch's LSTM (mkldnn_rnn_layer) in its lower precision: the loop
            # gets that dtype's input and state, so every executor returns torch.nn's dtype
            dtype = torch.get_autocast_dtype("cpu")
            x, hx = x.to(dtype), tuple(s.to(dtype) for s in hx)
        if plan.whole_stack:
            native: NativeExecutor = plan.executors[0][0]  # type: ignore[assignment]
            weights = [
                w
                for layer in range(self.num_layers)
                for direction in range(self.num_directions)
                for w in flat_weights(self.cell, self._dropped_params(layer, direction))
            ]
            out, finals = native.run_stack(
                self.cell, weights, x, hx, lengths, num_layers=self.num_layers,
                dropout=self.dropout, training=self.training, bidirectional=self.bidirectional,
            )
            return out, finals, None

        def run_layer(layer: int, direction: int, spec: CellSpec, params, x, state0, sweep: Sweep):
            return plan.executors[layer][direction].run(spec, params, x, state0, *sweep)

        return self._run_layers(run_layer, x, hx, lengths, return_states)

    def _run_layers(
        self, run_layer, x: Tensor, hx: State, lengths: Tensor | None, return_states: bool
    ) -> tuple[Tensor, State, tuple[Tensor, ...] | None]:
        """The stack, layer by layer and direction by direction: ``run_layer(layer, direction, spec,
        params, x, state0, sweep)`` runs one."""
        training = self.training
        T, B = x.shape[0], x.shape[1]
        D = self.num_directions
        finals_per: list[State] = []
        states_per_layer: list[tuple[Tensor, ...]] = []
        layer_input = x
        for layer, spec in enumerate(self.cells):
            inp = layer_input
            if training and self.variational_dropout > 0:
                inp = inp * dropout_mask((1, B, inp.shape[-1]), self.variational_dropout, inp)
            outs, layer_states = [], []
            for direction in range(D):
                params = self._dropped_params(layer, direction)
                masks = self._step_masks(spec, T, B, inp)
                index = layer * D + direction
                result = run_layer(
                    layer, direction, spec, params, inp, tuple(s[index] for s in hx),
                    Sweep(lengths, direction == 1, masks, return_states),
                )
                outs.append(result.outputs)
                finals_per.append(result.final_state)
                if return_states:
                    layer_states.append(result.states)
            out = outs[0] if D == 1 else torch.cat(outs, dim=-1)
            if self.residual and layer > 0:
                out = out + layer_input
            if return_states:
                states_per_layer.append(
                    tuple(torch.cat(parts, dim=-1) for parts in zip(*layer_states, strict=True))
                )
            if layer < self.num_layers - 1 and self.dropout > 0 and training:
                out = torch.nn.functional.dropout(out, self.dropout, training=True)
            layer_input = out
        finals = tuple(torch.stack(parts) for parts in zip(*finals_per, strict=True))
        states = None
        if return_states:
            states = tuple(torch.stack(parts) for parts in zip(*states_per_layer, strict=True))
        return layer_input, finals, states

    def _prepare_call(
        self, input: Tensor | PackedSequence, state, lengths: Tensor | None, mask: Tensor | None
    ) -> _Call:
        """``forward``'s arguments checked (torch.nn's order and messages) and in the time-major
        layout the executors take."""
        packed_info = None
        if isinstance(input, PackedSequence):
            if lengths is not None or mask is not None:
                raise ValueError("a PackedSequence carries its own lengths; do not pass lengths/mask")
            packed_info = (input.sorted_indices, input.unsorted_indices)
            x, lengths = pad_packed_sequence(input)  # (T, B, I), original batch order
            batched = True
            self._state_parts(state, batched)  # torch checks the state's dims before the input
            self._check_input(x)
        else:
            x = input
            if x.dim() not in (2, 3):
                tensor = " tensor" if self._mode == "RNN" else ""  # torch.nn.RNN's wording differs
                raise ValueError(f"{self._mode}: Expected input to be 2D or 3D, got {x.dim()}D{tensor} instead")
            batched = x.dim() == 3
            self._state_parts(state, batched)
            self._check_input(x)
            if not batched:
                x = x.unsqueeze(1)
            elif self.batch_first:
                x = x.transpose(0, 1)
            lengths = self._resolve_lengths(x, lengths, mask, batched)
        hx = self._prepare_state(state, x.shape[1], x, batched)
        # torch's kernels check this after torch.nn's Python checks (a tracer records no checks)
        if not torch.jit.is_tracing() and x.shape[0] == 0:
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
        return _Call(x, hx, lengths, batched, packed_info)

    def _check_traceable(self, plan: ExecutionPlan) -> None:
        """Under ``torch.jit.trace`` (also ``torch.onnx.export(dynamo=False)``) only torch's kernels
        give a trace that is right for every input shape: a Python time loop is unrolled for the
        traced length, rnnkit's C++ kernels and mask generator are recorded as constants."""
        why = None
        if not all(ex.name == "native" for per in plan.executors for ex in per):
            why = plan.stack_refused or "not every layer runs on torch's kernels"
        elif self.training and (self.variational_dropout > 0 or self.weight_drop > 0):
            why = "variational dropout/weight drop masks come from rnnkit's generator"
        if why is not None:
            raise RuntimeError(
                f"torch.jit.trace cannot record this {type(self).__name__} ({why}): the trace would "
                "compute something else for other input shapes. Trace a plain configuration "
                "(backend='auto' or 'native', in eval mode for stochastic regularisers), or use "
                "torch.export.export or torch.compile, which handle every configuration"
            )

    def _dropped_params(self, layer: int, direction: int) -> Params:
        params = self.layer_params(layer, direction)
        if self.training and self.weight_drop > 0:
            w = params["weight_hh"]
            params["weight_hh"] = w * dropout_mask(tuple(w.shape), self.weight_drop, w)
        return params

    def _step_masks(self, spec: CellSpec, T: int, B: int, like: Tensor) -> StepMasks | None:
        if not self._in_loop_masks():
            return None
        recurrent = None
        if self.training and self.recurrent_dropout > 0:
            recurrent = dropout_mask((B, spec.output_size), self.recurrent_dropout, like)
        zoneout = tuple(
            zoneout_weights(p, T, B, n, like, self.training)
            for p, n in zip(self.zoneout, spec.state_sizes(), strict=True)
        )
        return StepMasks(recurrent, zoneout)

    @contextlib.contextmanager
    def observed(self, observer: Any) -> Iterator[None]:
        """Inside the block every forward pass runs each layer on the reference loop with
        ``observer``'s hooks: ``observer.input(x)`` (the time-major input, returned possibly changed),
        ``observer.layer(layer, direction, spec)`` (a :class:`~rnnkit.executors.reference.StepObserver`
        for that layer's loop) and ``observer.finished(x, hx, lengths, output)``. The diagnostics
        (:mod:`rnnkit.diagnostics.trace`) observe the model this way."""
        before = self.__dict__.get("_observer")
        self.__dict__["_observer"] = observer
        try:
            yield
        finally:
            if before is None:
                self.__dict__.pop("_observer", None)
            else:
                self.__dict__["_observer"] = before

    def __prepare_scriptable__(self):  # torch.jit.script calls this on every module first
        refuse_scripting(self)

    # ---- argument checks ----------------------------------------------------------------------
    @property
    def _mode(self) -> str:
        mode = torch_mode(self.cell)  # torch.nn's class name, as its messages say it
        return type(self).__name__ if mode is None else mode.split("_")[0]

    def _check_input(self, x: Tensor) -> None:
        w = self.weight_ih_l0
        if x.dtype != w.dtype and not torch.is_autocast_enabled(x.device.type):
            raise ValueError(
                f"RNN input dtype ({x.dtype}) does not match weight dtype ({w.dtype}). "
                f"Convert input: input.to({w.dtype}), or convert model: model.to({x.dtype})"
            )
        if self.input_size != x.size(-1):
            raise RuntimeError(
                f"input.size(-1) must be equal to input_size. Expected {self.input_size}, "
                f"got {x.size(-1)}"
            )

    def _resolve_lengths(
        self, x: Tensor, lengths: Tensor | None, mask: Tensor | None, batched: bool
    ) -> Tensor | None:
        T, B = x.shape[0], x.shape[1]
        if mask is not None:
            if lengths is not None:
                raise ValueError("pass lengths or mask, not both")
            m = torch.as_tensor(mask, device=x.device).bool()
            expected = (B, T) if self.batch_first else (T, B)
            if not batched:
                expected = (T,)
            if tuple(m.shape) != expected:
                raise ValueError(f"mask must have shape {expected} like the input, got {tuple(m.shape)}")
            m = m.reshape(1, T) if not batched else (m if self.batch_first else m.t())
            lengths = m.sum(dim=1)
            prefix = torch.arange(T, device=m.device).unsqueeze(0) < lengths.unsqueeze(1)
            if not torch.equal(prefix, m):
                raise ValueError("mask must mark a contiguous prefix of each sequence (True then False)")
        if lengths is None:
            return None
        lengths = torch.as_tensor(lengths, dtype=torch.int64).reshape(-1)
        if lengths.numel() != B:
            raise ValueError(f"lengths must have one entry per sequence ({B}), got {lengths.numel()}")
        if B and torch.compiler.is_compiling():  # a graph checks it when it runs: the values are data
            torch._assert_async(((lengths >= 1) & (lengths <= T)).all(),
                                "lengths must lie in [1, T] (the sequence length)")
        elif B and (int(lengths.min()) < 1 or int(lengths.max()) > T):
            raise ValueError(f"lengths must lie in [1, {T}] (the sequence length), got {lengths.tolist()}")
        return lengths.to(x.device)

    def _state_parts(self, state, batched: bool) -> State | None:
        """The user's state as components, with types, count and dimensions checked (torch's messages);
        unbatched components get their batch dimension."""
        if state is None:
            return None
        sizes = self._state_sizes
        is_tuple = len(sizes) > 1
        parts = tuple(state) if is_tuple else (state,)
        if is_tuple and len(parts) != len(sizes):
            raise ValueError(f"{self._mode} expects a state of {len(sizes)} tensors, got {len(parts)}")
        want = 3 if batched else 2
        bad_type = bad_dim = False
        for p in parts:  # plain loops: this runs on every streaming step()
            if not isinstance(p, Tensor):
                bad_type = True
            elif p.dim() != want:
                bad_dim = True
        if bad_type:
            raise TypeError("state must be a Tensor" + (" tuple" if is_tuple else ""))
        if bad_dim:
            kind = "batched 3-D" if batched else "unbatched 2-D"
            if self._state_is_tuple:
                dims = ", ".join(f"{p.dim()}-D" for p in parts)
                raise RuntimeError(
                    f"For {kind} input, hx and cx should also be {want}-D but got ({dims}) tensors"
                )
            raise RuntimeError(
                f"For {kind} input, hx should also be {want}-D but got {parts[0].dim()}-D tensor"
            )
        return parts if batched else tuple(p.unsqueeze(1) for p in parts)

    def _prepare_state(self, state, batch: int, x: Tensor, batched: bool) -> State:
        """Initial state in torch.nn's layout, checked, as components (L*D, B, n)."""
        sizes = self._state_sizes
        LD = self.num_layers * self.num_directions
        parts = self._state_parts(state, batched)
        if parts is None:
            return tuple(x.new_zeros(LD, batch, n) for n in sizes)
        for k in range(len(parts)):  # plain loop: this runs on every streaming step()
            p, expected = parts[k], (LD, batch, sizes[k])
            if p.shape != expected:
                which = f"hidden[{k}]" if self._state_is_tuple else "hidden"
                raise RuntimeError(f"Expected {which} size {expected}, got {list(p.shape)}")
        return parts


def _repack(
    outputs: Tensor, lengths: Tensor, sorted_indices: Tensor | None, unsorted_indices: Tensor | None
) -> PackedSequence:
    """Pack ``outputs`` (T, B, *) with the input's batch order, as torch.nn returns it."""
    if sorted_indices is None:
        packed = pack_padded_sequence(outputs, lengths.cpu(), enforce_sorted=True)
        return packed
    ordered = outputs.index_select(1, sorted_indices)
    packed = pack_padded_sequence(ordered, lengths.cpu()[sorted_indices.cpu()], enforce_sorted=True)
    return PackedSequence(packed.data, packed.batch_sizes, sorted_indices, unsorted_indices)
