"""What ``rnnkit diagnose RUN_DIR`` runs on a classify run: the first ``size`` training cases of the
data file, padded to the longest, the loss their cross-entropy against the labels. The model is called
with the cases' lengths (padded steps stay outside the recurrence, as in training), through
:class:`WithLengths`, because the recorder calls ``module(x)``; an ensemble (seeds or cross-fitted
folds) is diagnosed through its first member, a single network with one recurrent layer stack."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from rnnkit.errors import UserError

from .cases import encode_labels, pad
from .data import check_dims
from .pipeline import ClassifyConfig, training_cases


class WithLengths(nn.Module):
    """``classifier(x, lengths)`` as a one-argument module: ``forward(x)`` with the bound lengths."""

    def __init__(self, classifier: nn.Module, lengths: Tensor) -> None:
        super().__init__()
        self.classifier = classifier
        self.register_buffer("lengths", lengths)

    @property
    def sequences(self) -> int:
        """How many cases the bound lengths describe (``rnnkit diagnose`` reports it)."""
        return len(self.lengths)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(x, self.lengths)


def diagnose_cases(run_dir: Path, model: nn.Module, cfg: ClassifyConfig, path: Path,
                   size: int) -> tuple[Tensor, Callable[[Tensor], Tensor], nn.Module]:
    """(values (B, T, D), loss of the logits, the module to call on the values) for the diagnostics."""
    net = model.nets[0] if hasattr(model, "nets") else model
    if net.arch == "transformer":
        raise UserError(f"{run_dir}: a transformer classifier has no recurrent layer to diagnose")
    train, _ = training_cases(cfg, path)
    check_dims(train, int(net.mean.numel()))
    cases = train.select(list(range(min(size, len(train)))))
    y = torch.from_numpy(encode_labels(cases.require_labels(), list(net.classes), str(path)))
    x, lengths = pad(cases)

    def loss(logits: Tensor) -> Tensor:
        return nn.functional.cross_entropy(logits, y)

    return torch.from_numpy(x), loss, WithLengths(net, torch.from_numpy(lengths))
