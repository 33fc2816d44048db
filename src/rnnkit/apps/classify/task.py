"""The LightningModule: cross-entropy (optionally class-weighted) on whole cases; keeps the weights of
the best validation epoch (highest accuracy, then lowest loss), which the pipeline saves.

The best weights and their score are buffers of the task, not attributes: they are part of the
task's ``state_dict`` and so of ``checkpoints/last.ckpt``, and ``--resume`` continues with the best
epoch of the interrupted run instead of forgetting it (the checkpoint reader checks each one's shape
against this task, like the model's own tensors)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from rnnkit.training.config import TrainConfig
from rnnkit.training.task import SequenceTask

from .ensemble import ClassifierEnsemble
from .model import Classifier

BEST_PREFIX = "best__"  # the task's buffers holding the best validation epoch's weights


def as_dataset(x: np.ndarray, lengths: np.ndarray, y: np.ndarray, folds: np.ndarray | None = None) -> TensorDataset:
    """(values, lengths, labels[, fold of each case]): with folds, the task cross-fits an ensemble."""
    tensors = [torch.from_numpy(x), torch.from_numpy(lengths), torch.from_numpy(y)]
    if folds is not None:
        tensors.append(torch.from_numpy(np.asarray(folds, dtype=np.int64)))
    return TensorDataset(*tensors)


def balanced_weights(y: np.ndarray, n_classes: int) -> list[float]:
    """``N / (C * n_c)`` per class (scikit-learn's "balanced"); 1 for a class with no cases."""
    counts = np.bincount(y, minlength=n_classes)
    return [float(len(y) / (n_classes * c)) if c else 1.0 for c in counts]


def crop_windows(x: torch.Tensor, lengths: torch.Tensor, crop: float,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Each case's window of ``round(crop * length)`` steps (at least 1) at a random start, moved to
    the front of its row and zero-padded after: ``(x (B, T, D), lengths (B,))`` of the windows."""
    keep = torch.clamp(torch.round(lengths.to(torch.float64) * crop).to(torch.int64), min=1)
    start = torch.floor(torch.rand(len(lengths), generator=generator, dtype=torch.float64)
                        * (lengths - keep + 1).to(torch.float64)).to(torch.int64)
    steps = torch.arange(x.shape[1])
    index = (start[:, None] + steps[None, :]).clamp(max=x.shape[1] - 1)
    out = torch.gather(x, 1, index[..., None].expand(-1, -1, x.shape[2]))
    return out * (steps[None, :] < keep[:, None])[..., None].to(x.dtype), keep


class ClassifyTask(SequenceTask):
    time_dim = 1  # batches are (B, T, D)

    def __init__(self, model: Classifier | ClassifierEnsemble, train_config: TrainConfig, train: TensorDataset,
                 val: TensorDataset, class_weights: list[float] | None = None, crop: float = 1.0) -> None:
        super().__init__(model, train_config)
        self._train, self._val = train, val
        # window slicing (Le Guennec et al. 2016): each training case seen through a random window of
        # ``crop`` of its steps, drawn anew every epoch from a generator reseeded from (seed, epoch,
        # rank), so a resumed run draws the same windows; validation and prediction see whole cases
        self.crop = float(crop)
        self._crop_rng = torch.Generator()
        self.register_buffer("class_weights", torch.tensor(class_weights) if class_weights else None)
        self._correct = torch.zeros(2, dtype=torch.float64)  # validation: right, seen
        # accuracy, loss, epoch of the best validation epoch so far (epoch -1: none yet)
        self.register_buffer("best_score", torch.tensor([-1.0, math.inf, -1.0], dtype=torch.float64))
        self._best_names = {name: BEST_PREFIX + name.replace(".", "__") for name in model.state_dict()}
        for name, value in model.state_dict().items():
            self.register_buffer(self._best_names[name], value.detach().clone())

    @property
    def best(self) -> dict[str, Any]:
        accuracy, loss, epoch = (float(v) for v in self.best_score)
        return {"accuracy": accuracy, "loss": loss, "epoch": int(epoch)}

    @property
    def best_state(self) -> dict[str, torch.Tensor] | None:
        """The model's weights at the best validation epoch (None before the first one)."""
        if self.best["epoch"] < 0:
            return None
        return {name: getattr(self, buffer).clone() for name, buffer in self._best_names.items()}

    def compute_loss(self, batch: Any, state: Any):
        x, lengths, y = batch[:3]
        if self.model.training and self.crop < 1:
            x, lengths = crop_windows(x, lengths, self.crop, self._crop_rng)
        x = x[:, :int(lengths.max())]  # the batch's own longest case: no step of padding beyond it
        if len(batch) > 3:  # cross-fitting: member k never learns from, and alone scores, fold k
            return self._cross_fit_loss(x, lengths, y, batch[3]), None
        if self.model.training and hasattr(self.model, "member_logits"):
            # an ensemble learns member by member: each from its own cross-entropy (their sum), not
            # as one mixture; validation scores the averaged probabilities (the model's logits)
            return sum(torch.nn.functional.cross_entropy(z, y, weight=self.class_weights)
                       for z in self.model.member_logits(x, lengths)), None
        logits = self.model(x, lengths)
        loss = torch.nn.functional.cross_entropy(logits, y, weight=self.class_weights)
        if not self.model.training:
            self._correct += torch.tensor([float((logits.argmax(-1) == y).sum()), float(len(y))], dtype=torch.float64)
        return loss, None

    def _cross_fit_loss(self, x, lengths, y, fold):
        logits = torch.stack(self.model.member_logits(x, lengths))  # (members, B, classes)
        members = torch.arange(len(logits), device=fold.device)
        if self.model.training:  # each member's weighted mean cross-entropy over the cases outside its fold
            keep = (fold[None, :] != members[:, None]).to(logits.dtype)  # (members, B)
            w = self.class_weights[y] if self.class_weights is not None else torch.ones_like(y, dtype=logits.dtype)
            per = torch.stack([torch.nn.functional.cross_entropy(z, y, weight=self.class_weights, reduction="none")
                               for z in logits])
            return ((per * keep).sum(1) / (w[None, :] * keep).sum(1).clamp_min(1e-12)).sum()
        oof = logits[fold, torch.arange(len(y), device=y.device)]  # each case by the member that never saw it
        loss = torch.nn.functional.cross_entropy(oof, y, weight=self.class_weights)
        self._correct += torch.tensor([float((oof.argmax(-1) == y).sum()), float(len(y))], dtype=torch.float64)
        return loss

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._crop_rng.manual_seed(self.epoch_seed())

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
            self.best_score.copy_(torch.tensor([accuracy, loss, float(self.current_epoch)], dtype=torch.float64))
            for name, value in self.model.state_dict().items():
                getattr(self, self._best_names[name]).copy_(value.detach())
