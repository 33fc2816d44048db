"""A training time budget for a task (``--minutes``): stop after the last batch that ends past it,
then validate and save as at the end of any run."""

from __future__ import annotations

import time


class TimeBudget:
    """Mixin for a :class:`~rnnkit.training.task.SequenceTask`: the task says its budget in
    :meth:`budget_minutes` (None: no budget). ``stopped_by_time`` records that the budget ended the run;
    ``budget_progress()`` (0 at the first batch, 1 at the budget) may drive schedules."""

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
        return (time.perf_counter() - self._t0) / (60 * minutes)

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.budget_progress() >= 1.0:
            self.stopped_by_time = True
            self.trainer.should_stop = True  # type: ignore[attr-defined]
