"""Tracing a :class:`~rnnkit.Recurrent`: replay its layers with the reference math, with probes.

Every diagnostic that looks *inside* time (gradients per step, input influence, gate values) needs
handles on the per-step states, which fused executors (native, fused C++, ...) never materialise as
autograd nodes. So, inside ``with trace(model) as tape:``, the recurrent module's time-major core
(``Recurrent._run``) is replaced by a replay that runs every layer and direction through the cell
spec's own ``project_input`` and ``step`` (exactly the ``reference`` executor's loop) and adds a
zero **probe** tensor to every state it produces:

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
    original = rec._run

    def replay(x: Tensor, hx: State, lengths: Tensor | None, return_states: bool):
        out, finals, states = _replay(rec, tape, x, hx, lengths, return_states)
        if check and not rec.training:
            args = (x.detach(), tuple(h.detach() for h in hx), lengths, False)
            with torch.no_grad():
                expected, _, _ = original(*args)
            if _mismatch(rec, out.detach(), expected) is not None:
                # Chaotic dynamics (e.g. a large recurrent init) amplify the rounding differences of a
                # fast executor over time; the replay must still equal the reference executor exactly.
                with torch.no_grad(), _backend(rec, "reference"):
                    reference, _, _ = original(*args)
                error = _mismatch(rec, out.detach(), reference)
                if error is not None:
                    raise DiagnosticsMismatch(error)
        return out, finals, states

    patched_before = rec.__dict__.get("_run")
    rec._run = replay  # type: ignore[method-assign]
    try:
        yield tape
    finally:
        if patched_before is None:
            del rec._run
        else:
            rec._run = patched_before  # type: ignore[method-assign]


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


def _replay(
    rec: Recurrent, tape: Tape, x: Tensor, hx: State, lengths: Tensor | None, return_states: bool
) -> tuple[Tensor, State, tuple[Tensor, ...] | None]:
    T, B = x.shape[0], x.shape[1]
    D = rec.num_directions
    valid = valid_steps(lengths, T, x.device)
    input_probe = torch.zeros_like(x, requires_grad=True)
    call = TracedCall(T, B, None if lengths is None else lengths.cpu(), {}, input_probe)
    layer_input = x + input_probe
    finals_per: list[State] = []
    states_per_layer: list[tuple[Tensor, ...]] = []
    for layer, spec in enumerate(rec.cells):
        outs, layer_states = [], []
        kinds = spec.gate_kinds()
        for direction in range(D):
            params = rec.layer_params(layer, direction)
            gx = spec.project_input(params, layer_input)
            index = layer * D + direction
            probes = tuple(
                torch.zeros(T + 1, B, n, dtype=x.dtype, device=x.device, requires_grad=True)
                for n in spec.state_sizes()
            )
            call.probes[(layer, direction)] = probes
            reverse = direction == 1
            start = T if reverse else 0
            state = tuple(s[index] + p[start] for s, p in zip(hx, probes, strict=True))
            outputs: list[Tensor] = [x.new_empty(0)] * T
            per_step: list[State] = [()] * T
            gates: dict[str, list[Tensor]] = {}
            for t in range(T - 1, -1, -1) if reverse else range(T):
                step_gates = spec.gates(params, gx[t], state)
                if tape.record_gates:
                    for name in kinds:
                        gates.setdefault(name, [x.new_empty(0)] * T)[t] = step_gates[name].detach().cpu()
                new = spec.state_from_gates(params, step_gates, state)
                new = tuple(
                    n if p == 0 else torch.lerp(n, old, p)
                    for n, old, p in zip(new, state, rec.zoneout, strict=True)
                )
                if valid is not None:
                    new = tuple(torch.where(valid[t], n, old) for n, old in zip(new, state, strict=True))
                boundary = t if reverse else t + 1
                state = tuple(s + p[boundary] for s, p in zip(new, probes, strict=True))
                outputs[t] = state[0] if valid is None else state[0] * valid[t]
                if return_states:
                    per_step[t] = state if valid is None else tuple(s * valid[t] for s in state)
            if tape.record_gates:
                call.gates[(layer, direction)] = {k: torch.stack(v) for k, v in gates.items()}
            outs.append(torch.stack(outputs))
            finals_per.append(state)
            if return_states:
                layer_states.append(tuple(torch.stack(s) for s in zip(*per_step, strict=True)))
        out = outs[0] if D == 1 else torch.cat(outs, dim=-1)
        if rec.residual and layer > 0:
            out = out + layer_input
        if return_states:
            states_per_layer.append(tuple(torch.cat(parts, dim=-1) for parts in zip(*layer_states, strict=True)))
        layer_input = out
    tape.calls.append(call)
    finals = tuple(torch.stack(parts) for parts in zip(*finals_per, strict=True))
    states = None
    if return_states:
        states = tuple(torch.stack(parts) for parts in zip(*states_per_layer, strict=True))
    return layer_input, finals, states
