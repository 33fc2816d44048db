"""The adding problem as a real (small) training task for the backbone: ``rnnkit adding train``.

A recurrent layer reads the sequence (:mod:`rnnkit.tasks.adding`) and a linear head on its last
output predicts the sum of the two marked values; loss MSE (the constant answer 1.0 scores 1/6).
Fixed train/validation sets are drawn from ``data_seed``, so runs with the same seeds reproduce
exactly (and a resumed run ends where the uninterrupted one does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from rnnkit.cells.registry import cell_names
from rnnkit.io.registry import register_model
from rnnkit.layers.recurrent import Recurrent
from rnnkit.tasks.adding import adding_batch
from rnnkit.training.config import TrainConfig
from rnnkit.training.task import SequenceTask
from rnnkit.validation import check_fields, opt


@dataclass
class AddingConfig:
    """The task's options; each ``opt`` says what it allows (rnnkit.validation)."""

    seq_len: int = opt(50, min=2, max=100_000, help="sequence length T")
    cell: str = opt("lstm", choices=cell_names)
    hidden: int = opt(32, min=1)
    num_layers: int = opt(1, min=1)
    train_size: int = opt(2048, min=1)
    val_size: int = opt(512, min=1)
    data_seed: int = opt(1234, min=0)

    def validate(self) -> AddingConfig:
        return check_fields(self)


@register_model("adding_regressor")
class AddingRegressor(nn.Module):
    """``Recurrent(cell, 2, hidden, num_layers)`` and a linear head on the last output."""

    def __init__(self, cell: str = "lstm", hidden: int = 32, num_layers: int = 1) -> None:
        super().__init__()
        self.cell, self.hidden, self.num_layers = cell, hidden, num_layers
        self.rnn = Recurrent(cell, 2, hidden, num_layers)
        self.head = nn.Linear(hidden, 1)

    def get_config(self) -> dict[str, Any]:
        return {"cell": self.cell, "hidden": self.hidden, "num_layers": self.num_layers}

    def step(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """``x`` (T, B, 2) from ``state``: (prediction after the last step (B,), final state)."""
        out, state = self.rnn(x, state)
        return self.head(out[-1]).squeeze(-1), state

    def forward(self, x: Tensor) -> Tensor:
        return self.step(x)[0]


def adding_data(cfg: AddingConfig) -> tuple[TensorDataset, TensorDataset]:
    """Fixed train and validation sets (batch-first tensors), drawn from ``data_seed``."""
    gen = torch.Generator().manual_seed(cfg.data_seed)
    xt, yt = adding_batch(cfg.seq_len, cfg.train_size, generator=gen)
    xv, yv = adding_batch(cfg.seq_len, cfg.val_size, generator=gen)
    return TensorDataset(xt.transpose(0, 1).contiguous(), yt), TensorDataset(xv.transpose(0, 1).contiguous(), yv)


class AddingTask(SequenceTask):
    """MSE on the adding problem; with TBPTT only the last chunk has a loss (earlier ones carry state)."""

    time_dim = 1  # batches are (B, T, 2)

    def __init__(self, model: AddingRegressor, train_config: TrainConfig, data: AddingConfig) -> None:
        super().__init__(model, train_config)
        self.data_cfg = data
        self._train, self._val = adding_data(data)

    def compute_loss(self, batch: Any, state: Any) -> tuple[Tensor | None, Any]:
        x, y = batch
        pred, state = self.model.step(x.transpose(0, 1), state)
        if self.chunk_index < self.n_chunks - 1:
            return None, state
        return torch.mean((pred - y) ** 2), state

    def diagnostic_inputs(self, batch: Any) -> tuple[Tensor, Any]:
        x, y = batch
        return x.transpose(0, 1), lambda pred: torch.mean((pred - y) ** 2)

    def train_dataloader(self):
        return self.loader(self._train, train=True)

    def val_dataloader(self):
        return self.loader(self._val, train=False)
