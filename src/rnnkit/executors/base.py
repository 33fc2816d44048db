"""The executor contract: how one cell runs over a whole sequence (one layer, one direction).

Every executor is called as::

    run(cell, params, x, state0, lengths=None, reverse=False, masks=None, return_states=False)
        -> RunResult(outputs, final_state, states)

``run`` (here, once) checks the call against ``supports`` and hands the executor's ``run_sweep``
the four arguments that say how to go over the sequence as one :class:`Sweep`.

- ``x`` (T, B, I) is the layer input; the executor does the input projection for all steps at once
  (``cell.project_input``) before its sequential loop.
- ``state0`` is a tuple with one (B, n) tensor per state component.
- ``lengths`` (B,) int64, each in [1, T]: steps at or past a sequence's length do not change its state
  and output zeros; in reverse, each sequence starts at its own last valid step.
- ``masks`` (:class:`StepMasks`) carries the per-step regularisers that act inside the loop.
- ``outputs`` (T, B, cell.output_size); ``final_state`` as ``state0``; ``states`` (if asked) one
  (T, B, n) tensor per state component, zero past each length.

``supports(cell, request)`` returns None if the executor can run that request, else the reason.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from rnnkit.cells.base import CellSpec, Params, State


@dataclass
class StepMasks:
    """Regularisers applied inside the time loop.

    - ``recurrent`` (B, output_size): multiplies ``h_{t-1}`` where it meets the recurrent weights
      (recurrent dropout, Gal & Ghahramani 2016); already scaled by 1/(1-p). Constant over time.
    - ``zoneout``: one entry per state component, each None or a tensor broadcastable to
      (T, B, n) holding the weight of the *previous* value: ``s_t = z*s_{t-1} + (1-z)*s~_t``
      (Krueger et al. 2017). Training passes Bernoulli(p) draws per step; evaluation passes p,
      the expectation.
    """

    recurrent: Tensor | None = None
    zoneout: tuple[Tensor | None, ...] | None = None

    def any(self) -> bool:
        return self.recurrent is not None or (
            self.zoneout is not None and any(z is not None for z in self.zoneout)
        )


class Sweep(NamedTuple):
    """How a run goes over the sequence: ``lengths`` (B,) or None, ``reverse`` time order, the
    in-loop regularisers ``masks``, and whether per-step states are returned."""

    lengths: Tensor | None = None
    reverse: bool = False
    masks: StepMasks | None = None
    return_states: bool = False


@dataclass(frozen=True)
class RunRequest:
    """What a layer asks an executor to do, for ``supports``."""

    device: torch.device
    dtype: torch.dtype
    has_masks: bool = False
    return_states: bool = False
    batch: int | None = None  # batch size, when known (auto's preference may depend on it)
    vmapped: bool = False  # inside torch.func.vmap: compiled kernels have no batching rule
    capture: str | None = None  # "torch.jit.trace" or "torch.export" while one records the call
    autocast: bool = False  # torch.autocast is on for the device: ops follow its dtype
    has_lengths: bool = False  # variable lengths: torch's kernels would take a packed sequence


#: ``supports``' answer under ``torch.func.vmap`` for the executors that call compiled kernels
NO_BATCHING_RULE = "torch.func.vmap: its kernels have no batching rule (the reference executor runs under vmap)"


def compiled_kernel_refusal(request: RunRequest, exportable: bool = False) -> str | None:
    """Why an executor that calls rnnkit's own C++/Triton kernels cannot run ``request``, for the
    transforms those kernels know nothing of (None if it can, as far as they go). ``exportable``:
    the executor records its kernels as custom operators under ``torch.export``
    (:mod:`rnnkit.executors.custom_ops`)."""
    if request.vmapped:
        return NO_BATCHING_RULE
    if request.capture is not None and not (exportable and request.capture == "torch.export"):
        # a tracer sees neither the kernel nor the Python that chose it: it would record constants
        return f"{request.capture} cannot record its C++ kernels (torch's kernels, 'native', can be recorded)"
    if request.autocast:
        return ("torch.autocast: its kernels ignore autocast (torch's kernels, 'native', or the "
                "reference follow it as torch.nn does)")
    return None


class RunResult(NamedTuple):
    outputs: Tensor
    final_state: State
    states: tuple[Tensor, ...] | None


class Executor(ABC):
    """Runs a cell over time. Subclasses set ``name`` and ``description``."""

    name: str
    description: str

    @abstractmethod
    def supports(self, cell: CellSpec, request: RunRequest) -> str | None:
        """None if this executor can run ``request`` for ``cell``, else why not."""

    def check_runnable(
        self, cell: CellSpec, x: Tensor, masks: StepMasks | None, return_states: bool
    ) -> None:
        """Raise ValueError with ``supports``' reason if this call cannot run here (a direct call to
        ``run`` bypasses the dispatcher, which asks ``supports`` first)."""
        has_masks = masks is not None and masks.any()
        reason = self.supports(cell, RunRequest(x.device, x.dtype, has_masks, return_states))
        if reason is not None:
            raise ValueError(f"{self.name} executor: {reason}")

    def run(
        self,
        cell: CellSpec,
        params: Params,
        x: Tensor,
        state0: State,
        lengths: Tensor | None = None,
        reverse: bool = False,
        masks: StepMasks | None = None,
        return_states: bool = False,
    ) -> RunResult:
        """Run ``cell`` over ``x`` (the contract in this module's docstring)."""
        self.check_runnable(cell, x, masks, return_states)
        return self.run_sweep(cell, params, x, state0, Sweep(lengths, reverse, masks, return_states))

    @abstractmethod
    def run_sweep(self, cell: CellSpec, params: Params, x: Tensor, state0: State, sweep: Sweep) -> RunResult:
        """The executor's own run, for a call ``supports`` accepts."""

    def precision(self, dtype: torch.dtype) -> str | None:
        """How a run in ``dtype`` computes, when not in ``dtype`` throughout (``rnnkit.explain``'s
        note), else None."""
        return None


def valid_steps(lengths: Tensor | None, T: int, device: torch.device) -> Tensor | None:
    """(T, B, 1) boolean: step t is inside sequence b."""
    if lengths is None:
        return None
    t = torch.arange(T, device=device).unsqueeze(1)
    return (t < lengths.to(device).unsqueeze(0)).unsqueeze(-1)


def flip_sequences(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence of ``x`` (T, B, ...) within its own length; padding stays in place.

    The padding-aware reversal that bidirectional layers need (as Flax's ``flip_sequences``):
    with lengths [3, 2] the columns ``a b c`` and ``d e _`` become ``c b a`` and ``e d _``.
    """
    if lengths is None:
        return x.flip(0)
    T = x.shape[0]
    t = torch.arange(T, device=x.device).unsqueeze(1)
    L = lengths.to(x.device).unsqueeze(0)
    index = torch.where(t < L, L - 1 - t, t)  # (T, B)
    index = index.view(T, -1, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(0, index)
