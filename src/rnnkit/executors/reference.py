"""The reference executor: a plain PyTorch loop over ``cell.step``. It is the specification.

Simple and obviously right; every other executor is tested against it. Autograd provides the
backward pass.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.cells.base import CellSpec, Gates, Params, State
from rnnkit.executors.base import Executor, RunRequest, RunResult, Sweep, valid_steps


class StepObserver:
    """Hooks into the reference loop (the diagnostics' probes and gate records). ``boundary`` k
    separates the inputs ``x_{<k}`` from ``x_{>=k}``: the initial state is at 0 (T in reverse), the
    state after step t at t + 1 (t in reverse)."""

    def state(self, boundary: int, state: State) -> State:
        """The state the loop carries on with (default: as computed)."""
        return state

    def gates(self, t: int, gates: Gates) -> None:
        """Step ``t``'s gates, as the cell computed them."""


class ReferenceExecutor(Executor):
    name = "reference"
    description = "Python loop over cell.step (the specification; any cell, any device)"

    def supports(self, cell: CellSpec, request: RunRequest) -> str | None:
        return None

    def run_sweep(
        self, cell: CellSpec, params: Params, x: Tensor, state0: State, sweep: Sweep,
        observer: StepObserver | None = None,
    ) -> RunResult:
        return run_steps(cell, params, cell.project_input(params, x), state0, sweep, observer)


#: the whole sequence forward, no masks, final state only
WHOLE_SEQUENCE = Sweep()


def run_steps(
    cell: CellSpec, params: Params, gx: Tensor, state0: State, sweep: Sweep = WHOLE_SEQUENCE,
    observer: StepObserver | None = None,
) -> RunResult:
    """The time loop over ``cell.step`` from the projected input ``gx`` (T, B, G*H): the reference
    run after its input projection. The fused executors' differentiable backward (double backward)
    recomputes their loop with it, so only the parameters ``cell.step`` reads need to be in
    ``params``."""
    lengths, reverse, masks, return_states = sweep
    T = gx.shape[0]
    valid = valid_steps(lengths, T, gx.device)
    recurrent_mask = masks.recurrent if masks is not None else None
    zoneout = masks.zoneout if masks is not None else None

    state = tuple(state0) if observer is None else observer.state(T if reverse else 0, tuple(state0))
    outputs: list[Tensor] = [gx.new_empty(0)] * T
    per_step: list[State] = [()] * T
    for t in range(T - 1, -1, -1) if reverse else range(T):
        if observer is None:
            new = cell.step(params, gx[t], state, recurrent_mask)
        else:
            gates = cell.gates(params, gx[t], state, recurrent_mask)
            observer.gates(t, gates)
            new = cell.state_from_gates(params, gates, state)
        if zoneout is not None:
            new = tuple(
                n if z is None else torch.lerp(n, old, z[t] if z.dim() == 3 else z)
                for n, old, z in zip(new, state, zoneout, strict=True)
            )
        if valid is not None:
            new = tuple(torch.where(valid[t], n, old) for n, old in zip(new, state, strict=True))
        state = new if observer is None else observer.state(t if reverse else t + 1, new)
        outputs[t] = state[0] if valid is None else state[0] * valid[t]
        if return_states:
            per_step[t] = state if valid is None else tuple(s * valid[t] for s in state)
    states = None
    if return_states:
        states = tuple(torch.stack(s) for s in zip(*per_step, strict=True))
    return RunResult(torch.stack(outputs), state, states)
