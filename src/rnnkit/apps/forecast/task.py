"""The LightningModule: negative log-likelihood of the forecast windows (no TBPTT: whole windows)."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import TensorDataset

from rnnkit.training.config import TrainConfig
from rnnkit.training.task import SequenceTask

from .data import Windows
from .model import Forecaster


def as_dataset(w: Windows) -> TensorDataset:
    return TensorDataset(*(torch.from_numpy(a) for a in (w.y_ctx, w.x_ctx, w.x_fut, w.static, w.y_fut)))


class ForecastTask(SequenceTask):
    time_dim = 1  # batches are (B, L, ...)

    def __init__(self, model: Forecaster, train_config: TrainConfig, train: Windows, val: Windows) -> None:
        super().__init__(model, train_config)
        self._train, self._val = as_dataset(train), as_dataset(val)

    def compute_loss(self, batch: Any, state: Any):
        y_ctx, x_ctx, x_fut, static, y_fut = batch
        return self.model.loss(y_ctx, x_ctx, x_fut, static, y_fut), None

    def train_dataloader(self):
        return self.loader(self._train, train=True)

    def val_dataloader(self):
        return self.loader(self._val, train=False)
