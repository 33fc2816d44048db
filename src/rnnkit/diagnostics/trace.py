"""Tracing a :class:`~rnnkit.Recurrent`: replay its layers with the reference math, with probes.

Every diagnostic that looks *inside* time (gradients per step, input influence, gate values) needs
handles on the per-step states, which fused executors (native, fused C++, ...) never materialise as
autograd nodes. So, inside ``with trace(model) as tape:``, the recurrent module runs every layer and direction on
the ``reference`` executor's loop (the cell spec's own ``project_input`` and ``gates``) with a
:class:`~rnnkit.executors.reference.StepObserver` (``Recurrent.observed``) that records the gates
and adds a zero **probe** tensor to every state the loop produces:

    s_k <- s_k + p_k,   p_k = 0 (requires grad)

Because the probe is zero the forward values are unchanged, and ``dL/dp_k = dL/ds_k`` exactly: the
gradient of the loss with respect to the state at that step, through every path that uses it
(next step, output, upper layers). The input gets a probe too (``dL/dx_t``). Everything around the
recurrent module (embeddings, heads, losses) runs untouched, so any model containing one works.

The replay is independent of the executor the module would pick, so the diagnostics work for every
executor; with ``check=True`` (the default) the replay's outputs are compared with the module's own
forward pass on its chosen executor, which catches any divergence between the two.

Time indexing (``boundary`` k = 0..T, used by every per-step result): boundary k separates inputs
``x_{<k}`` from ``x_{>=k}``. The forward direction's state at boundary k is ``h_k``, the state after
k inputs (``h_0`` is the initial state); the reverse direction's state at boundary k is the state
after consuming ``x_{T-1} .. x_k`` (boundary T is its initial state).

The replay follows evaluation semantics: no dropout, weight drop or recurrent dropout; zoneout by
its expectation (which is what ``eval()`` does). Diagnostics switch the model to ``eval()`` while
they run and restore its mode afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from rnnkit.cells.base import State
from rnnkit.diagnostics.gates import GateStats, gate_kinds, summarize_gate
from rnnkit.executors.base import valid_steps
from rnnkit.executors.reference import StepObserver
from rnnkit.layers.recurrent import Recurrent


class DiagnosticsMismatch(RuntimeError):
    """The replay disagrees with the module's own forward pass (a bug in one of them)."""


def find_recurrent(model: nn.Module, name: str | None = None) -> Recurrent:
    """The :class:`Recurrent` to diagnose: ``model`` itself, the submodule ``name``, or the only one."""
    if isinstance(model, Recurrent) and name is None:
        return model
    if name is not None:
        sub = model.get_submodule(name)
        if not isinstance(sub, Recurrent):
            raise ValueError(f"{name!r} is a {type(sub).__name__}, not an rnnkit Recurrent layer")
        return sub
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, Recurrent)]
    if not found:
        raise ValueError(f"{type(model).__name__} holds no rnnkit Recurrent layer to diagnose")
    if len(found) > 1:
        names = ", ".join(repr(n) for n, _ in found)
        raise ValueError(f"{type(model).__name__} holds several Recurrent layers ({names}); pass recurrent=NAME")
    return found[0][1]


@dataclass
class TracedCall:
    """What one traced forward pass of the recurrent module left behind."""

    T: int
    batch: int
    lengths: Tensor | None
    #: (layer, direction) -> one probe (T+1, B, n) per state component, indexed by boundary
    probes: dict[tuple[int, int], tuple[Tensor, ...]]
    input_probe: Tensor  # (T, B, I)
    #: (layer, direction) -> gate -> (T, B, n) detached activations (empty unless record_gates)
    gates: dict[tuple[int, int], dict[str, Tensor]] = field(default_factory=dict)


class Tape:
    """The record of a traced forward pass; see :mod:`rnnkit.diagnostics.trace`."""

    def __init__(self, recurrent: Recurrent, record_gates: bool) -> None:
        self.recurrent = recurrent
        self.record_gates = record_gates
        self.calls: list[TracedCall] = []

    @property
    def call(self) -> TracedCall:
        if not self.calls:
            raise RuntimeError("the traced recurrent layer was not called inside the trace")
        if len(self.calls) > 1:
            raise RuntimeError(
                f"the traced recurrent layer was called {len(self.calls)} times; trace one call at a time"
            )
        return self.calls[0]

    @property
    def state_names(self) -> tuple[str, ...]:
        return ("h", "c")[: len(self.recurrent.cell.state_sizes())]

    def state_gradients(self, loss: Tensor) -> dict[tuple[int, int], tuple[Tensor, ...]]:
        """``dL/ds_k`` for every (layer, direction), per state component, as (T+1, B, n) tensors.

        Uses ``torch.autograd.grad`` (the graph is kept): parameters' ``.grad`` are left untouched.
        """
        call = self.call
        keys = list(call.probes)
        flat = [p for k in keys for p in call.probes[k]]
        grads = torch.autograd.grad(loss, flat, retain_graph=True, allow_unused=True)
        out: dict[tuple[int, int], tuple[Tensor, ...]] = {}
        i = 0
        for k in keys:
            n = len(call.probes[k])
            out[k] = tuple(
                torch.zeros_like(p) if g is None else g
                for p, g in zip(call.probes[k], grads[i : i + n], strict=True)
            )
            i += n
        return out

    def input_gradient(self, scalar: Tensor) -> Tensor:
        """``d scalar / dx`` (T, B, I) for the recurrent module's input."""
        (g,) = torch.autograd.grad(scalar, [self.call.input_probe], retain_graph=True, allow_unused=True)
        return torch.zeros_like(self.call.input_probe) if g is None else g

    def gate_statistics(self) -> GateStats:
        """Saturation of every gate, over valid steps (see :mod:`rnnkit.diagnostics.gates`)."""
        call = self.call
        if not self.record_gates:
            raise RuntimeError("trace(..., record_gates=True) is needed for gate statistics")
        rec = self.recurrent
        valid = valid_steps(call.lengths, call.T, torch.device("cpu"))
        layers = []
        for layer, spec in enumerate(rec.cells):
            kinds = gate_kinds(spec)
            per_dir = []
            for direction in range(rec.num_directions):
                gates = call.gates[(layer, direction)]
                summary = {}
                for name, values in gates.items():
                    v = values if valid is None else values[valid.expand(-1, -1, values.shape[-1])]
                    summary[name] = summarize_gate(kinds[name], v)
                per_dir.append(summary)
            layers.append(per_dir)
        return GateStats(rec.cell_name, layers)


@contextlib.contextmanager
def trace(
    model: nn.Module, *, recurrent: str | None = None, record_gates: bool = False, check: bool = True,
) -> Iterator[Tape]:
    """Replace the recurrent layer's core with the probed replay for the duration of the block.

    ``check``: also run the module's own core (on the executor it would choose) and raise
    :class:`DiagnosticsMismatch` if the outputs differ; only done in eval mode (in training mode the
    module's own pass draws dropout masks that the replay does not use).
    """
    rec = find_recurrent(model, recurrent)
    tape = Tape(rec, record_gates)
    with rec.observed(_TapeObserver(rec, tape, check)):
        yield tape


class _LayerProbes(StepObserver):
    """One layer and direction of a traced call: probes on every state, gates recorded."""

    def __init__(self, probes: tuple[Tensor, ...], kinds: dict[str, str] | None, T: int) -> None:
        self.probes, self.kinds, self.T = probes, kinds, T
        self.gate_steps: dict[str, list[Tensor]] = {}

    def state(self, boundary: int, state: State) -> State:
        return tuple(s + p[boundary] for s, p in zip(state, self.probes, strict=True))

    def gates(self, t: int, gates: dict[str, Tensor]) -> None:
        if self.kinds is not None:
            for name in self.kinds:
                self.gate_steps.setdefault(name, [gates[name].new_empty(0)] * self.T)[t] = gates[name].detach().cpu()


class _TapeObserver:
    """What ``trace`` hooks into the module (see ``Recurrent.observed``): a probe on the input and on
    every state, gate records, and the check against the module's own forward pass."""

    def __init__(self, rec: Recurrent, tape: Tape, check: bool) -> None:
        self.rec, self.tape, self.check = rec, tape, check
        self.call: TracedCall | None = None
        self.layers: dict[tuple[int, int], _LayerProbes] = {}

    def input(self, x: Tensor) -> Tensor:
        T, B = x.shape[0], x.shape[1]
        self.call = TracedCall(T, B, None, {}, torch.zeros_like(x, requires_grad=True))
        self.layers = {}
        return x + self.call.input_probe

    def layer(self, layer: int, direction: int, spec) -> StepObserver:
        call = self.call
        assert call is not None
        like = call.input_probe
        probes = tuple(torch.zeros(call.T + 1, call.batch, n, dtype=like.dtype, device=like.device,
                                   requires_grad=True) for n in spec.state_sizes())
        call.probes[(layer, direction)] = probes
        observer = _LayerProbes(probes, spec.gate_kinds() if self.tape.record_gates else None, call.T)
        self.layers[(layer, direction)] = observer
        return observer

    def finished(self, x: Tensor, hx: State, lengths: Tensor | None, out: Tensor) -> None:
        call = self.call
        assert call is not None
        call.lengths = None if lengths is None else lengths.cpu()
        if self.tape.record_gates:
            call.gates = {k: {g: torch.stack(v) for g, v in o.gate_steps.items()} for k, o in self.layers.items()}
        self.tape.calls.append(call)
        if self.check and not self.rec.training:
            self._check(x, hx, lengths, out)

    def _check(self, x: Tensor, hx: State, lengths: Tensor | None, out: Tensor) -> None:
        rec = self.rec
        args = (x.detach(), tuple(h.detach() for h in hx), lengths, False)
        with torch.no_grad(), rec.observed(None):
            expected, _, _ = rec._run(*args)
        if _mismatch(rec, out.detach(), expected) is not None:
            # Chaotic dynamics (e.g. a large recurrent init) amplify the rounding differences of a
            # fast executor over time; the traced loop must still equal the reference executor exactly.
            with torch.no_grad(), rec.observed(None), _backend(rec, "reference"):
                reference, _, _ = rec._run(*args)
            error = _mismatch(rec, out.detach(), reference)
            if error is not None:
                raise DiagnosticsMismatch(error)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """``model.eval()`` for the block, then every submodule's own mode back."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes.items():
            m.training = mode


def _mismatch(rec: Recurrent, got: Tensor, expected: Tensor) -> str | None:
    """Why the replay's outputs differ from the module's, or None if they agree."""
    tol = 1e-9 if got.dtype == torch.float64 else 1e-3 if got.dtype in (torch.float16, torch.bfloat16) else 1e-4
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    err = float((got - expected).abs().max()) if got.numel() else 0.0
    if err <= tol * max(1.0, scale):
        return None
    return (
        f"diagnostics replay of {rec.cell_name!r} differs from the module's forward pass "
        f"by {err:.3g} (tolerance {tol:g}); report this as a bug"
    )


@contextlib.contextmanager
def _backend(rec: Recurrent, name: str) -> Iterator[None]:
    saved = rec.backend
    rec.backend = name
    try:
        yield
    finally:
        rec.backend = saved
