"""A training time budget for a task (``--minutes``): stop after the last batch that ends past it,
then validate and save as at the end of any run."""

from __future__ import annotations

import time

import torch
import torch.distributed as dist


class TimeBudget:
    """Mixin for a :class:`~rnnkit.training.task.SequenceTask`: the task says its budget in
    :meth:`budget_minutes` (None: no budget). ``stopped_by_time`` records that the budget ended the run;
    ``budget_progress()`` (0 at the first batch, 1 at the budget) may drive schedules.

    Under DDP every process reads its own clock at a slightly different moment; the progress is the
    largest over the processes (one all-reduce of a scalar per call), so all of them step the same
    learning rate and stop after the same batch: their weights stay identical."""

    _t0: float = 0.0
    stopped_by_time: bool = False

    def budget_minutes(self) -> float | None:
        raise NotImplementedError

    def on_train_start(self) -> None:
        super().on_train_start()  # type: ignore[misc]  (the task's own, e.g. SequenceTask's)
        self._t0 = time.perf_counter()
        self.stopped_by_time = False

    def budget_progress(self) -> float:
        minutes = self.budget_minutes()
        if minutes is None or not self._t0:
            return 0.0
        local = (time.perf_counter() - self._t0) / (60 * minutes)
        return _max_over_processes(local, getattr(self, "device", torch.device("cpu")))

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.budget_progress() >= 1.0:
            self.stopped_by_time = True
            self.trainer.should_stop = True  # type: ignore[attr-defined]


def _max_over_processes(value: float, device: torch.device) -> float:
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)  # NCCL reduces device tensors only
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())
