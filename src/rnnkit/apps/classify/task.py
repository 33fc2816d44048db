"""The LightningModule: cross-entropy (optionally class-weighted) on whole cases; keeps the weights of
the best validation epoch (highest accuracy, then lowest loss), which the pipeline saves."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from rnnkit.training.config import TrainConfig
from rnnkit.training.task import SequenceTask

from .model import Classifier


def as_dataset(x: np.ndarray, lengths: np.ndarray, y: np.ndarray) -> TensorDataset:
    return TensorDataset(torch.from_numpy(x), torch.from_numpy(lengths), torch.from_numpy(y))


def balanced_weights(y: np.ndarray, n_classes: int) -> list[float]:
    """``N / (C * n_c)`` per class (scikit-learn's "balanced"); 1 for a class with no cases."""
    counts = np.bincount(y, minlength=n_classes)
    return [float(len(y) / (n_classes * c)) if c else 1.0 for c in counts]


class ClassifyTask(SequenceTask):
    time_dim = 1  # batches are (B, T, D)

    def __init__(self, model: Classifier, train_config: TrainConfig, train: TensorDataset, val: TensorDataset,
                 class_weights: list[float] | None = None) -> None:
        super().__init__(model, train_config)
        self._train, self._val = train, val
        self.register_buffer("class_weights", torch.tensor(class_weights) if class_weights else None)
        self._correct = torch.zeros(2, dtype=torch.float64)  # validation: right, seen
        self.best: dict[str, Any] = {"accuracy": -1.0, "loss": math.inf, "epoch": -1}
        self.best_state: dict[str, torch.Tensor] | None = None

    def compute_loss(self, batch: Any, state: Any):
        x, lengths, y = batch
        x = x[:, :int(lengths.max())]  # the batch's own longest case: no step of padding beyond it
        logits = self.model(x, lengths)
        loss = torch.nn.functional.cross_entropy(logits, y, weight=self.class_weights)
        if not self.model.training:
            self._correct += torch.tensor([float((logits.argmax(-1) == y).sum()), float(len(y))], dtype=torch.float64)
        return loss, None

    def train_dataloader(self):
        return self.loader(self._train, train=True)

    def val_dataloader(self):
        return self.loader(self._val, train=False)

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self._correct.zero_()

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        right, seen = (float(v) for v in self._reduce(self._correct))
        if seen == 0 or self.trainer.sanity_checking:
            return
        accuracy, loss = right / seen, self.epoch_val_loss
        self.log("val_accuracy", accuracy, logger=self._has_logger())
        if (accuracy, -loss) > (self.best["accuracy"], -self.best["loss"]):
            self.best = {"accuracy": accuracy, "loss": loss, "epoch": self.current_epoch}
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
