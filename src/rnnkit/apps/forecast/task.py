"""The LightningModule: negative log-likelihood of the forecast windows (no TBPTT: whole windows).

With ``select_best`` the validation windows are held out (not trained on) and every ensemble member
keeps the weights of its own best validation epoch (model selection per member, restored when
training ends, before the run directory saves the weights). With ``keep_epochs`` (the refit on every
window, pipeline.refit_model) member ``i`` keeps its weights at the end of epoch ``keep_epochs[i]``,
the epoch the held-out run selected for it.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch.utils.data import TensorDataset

from rnnkit.training.config import TrainConfig
from rnnkit.training.task import SequenceTask

from .data import Windows
from .model import Forecaster, member_losses


def as_dataset(w: Windows) -> TensorDataset:
    return TensorDataset(*(torch.from_numpy(a) for a in (w.y_ctx, w.x_ctx, w.x_fut, w.static, w.y_fut)))


class ForecastTask(SequenceTask):
    time_dim = 1  # batches are (B, L, ...)

    def __init__(self, model: Forecaster, train_config: TrainConfig, train: Windows, val: Windows,
                 select_best: bool = False, keep_epochs: list[int] | None = None) -> None:
        super().__init__(model, train_config)
        if select_best and keep_epochs is not None:
            raise ValueError("select_best and keep_epochs exclude each other")
        self._train, self._val = as_dataset(train), as_dataset(val)
        self.select_best = select_best
        self._members = list(getattr(model, "nets", [model]))
        self._member_sum = torch.zeros(len(self._members), dtype=torch.float64)
        self._member_n = 0
        self.best: list[tuple[float, int, dict[str, torch.Tensor] | None]] = [(math.inf, -1, None)] * len(self._members)
        self.keep_epochs = keep_epochs

    def compute_loss(self, batch: Any, state: Any):
        y_ctx, x_ctx, x_fut, static, y_fut = batch
        return self.model.loss(y_ctx, x_ctx, x_fut, static, y_fut), None

    def train_dataloader(self):
        return self.loader(self._train, train=True)

    def val_dataloader(self):
        return self.loader(self._val, train=False)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        super().validation_step(batch, batch_idx)
        if self.select_best:
            y_ctx, x_ctx, x_fut, static, y_fut = batch
            self._member_sum += member_losses(self.model, y_ctx, x_ctx, x_fut, static, y_fut).double() * len(y_ctx)
            self._member_n += len(y_ctx)

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self._member_sum.zero_()
        self._member_n = 0

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if not self.select_best or self.trainer.sanity_checking:
            return
        # every process saw its share of the validation windows: all choose from the sums over all of
        # them, so they choose the same epochs (a refit of different lengths would wait forever in DDP)
        total = self._reduce(torch.cat([self._member_sum, torch.tensor([float(self._member_n)], dtype=torch.float64)]))
        sums, n = total[:-1], float(total[-1])
        if n == 0:
            return
        for i, loss in enumerate((sums / n).tolist()):
            if math.isfinite(loss) and loss < self.best[i][0]:
                self.best[i] = (loss, self.current_epoch, self._snapshot(i))

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        if self.keep_epochs is None:
            return
        for i, epoch in enumerate(self.keep_epochs):
            if epoch == self.current_epoch:
                self.best[i] = (math.nan, epoch, self._snapshot(i))

    def _snapshot(self, i: int) -> dict[str, torch.Tensor]:
        """A copy of member ``i``'s weights (restored by on_train_end)."""
        return {k: v.detach().clone() for k, v in self._members[i].state_dict().items()}

    def on_train_end(self) -> None:
        super().on_train_end()  # ema_decay: the averages into the model first; a chosen epoch's snapshot holds them too
        if self.select_best or self.keep_epochs is not None:  # each member back to its chosen epoch
            for member, (_, _, state) in zip(self._members, self.best, strict=True):
                if state is not None:
                    member.load_state_dict(copy.copy(state))

    def best_epochs(self) -> list[int]:
        return [epoch for _, epoch, _ in self.best]
