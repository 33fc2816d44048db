"""Seed ensembles: ``members`` classifiers of one configuration, member ``k`` initialised from seed
``seed + k``, trained side by side on the same batches (one run, one checkpoint, so ``--resume`` and
early stopping work as for one model). Each member learns from its own cross-entropy (``task.py``);
the ensemble's prediction is the mean of the members' class probabilities, returned as its logarithm
so that ``softmax(ensemble(x, lengths))`` is that mean and every reader of a classifier's logits
(evaluate, predict, the validation loss) takes an ensemble unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.errors import UserError
from rnnkit.io.registry import register_model

from .model import Classifier

MAX_MEMBERS = 64


@register_model("classify.ensemble")
class ClassifierEnsemble(nn.Module):
    def __init__(self, members: int = 3, seed: int = 0, **member_config: Any) -> None:
        super().__init__()
        if not 2 <= members <= MAX_MEMBERS:
            raise UserError(f"an ensemble needs 2 to {MAX_MEMBERS} members, got {members}")
        self.members, self.seed = int(members), int(seed)
        nets = []
        for k in range(self.members):
            with torch.random.fork_rng(devices=[]):  # the caller's random stream is left as it was
                torch.manual_seed(self.seed + k)
                nets.append(Classifier(**member_config))
        self.nets = nn.ModuleList(nets)
        self._member_config = dict(self.nets[0].get_config())

    # what the pipeline reads of a classifier
    @property
    def classes(self) -> list[str]:
        return self.nets[0].classes

    @property
    def mean(self) -> Tensor:
        return self.nets[0].mean

    @property
    def std(self) -> Tensor:
        return self.nets[0].std

    def get_config(self) -> dict[str, Any]:
        return {"members": self.members, "seed": self.seed, **self._member_config}

    def member_logits(self, x: Tensor, lengths: Tensor) -> list[Tensor]:
        return [net(x, lengths) for net in self.nets]

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """``log`` of the members' mean class probabilities ``(B, classes)``."""
        logp = torch.stack([torch.log_softmax(z, -1) for z in self.member_logits(x, lengths)])
        return torch.logsumexp(logp, 0) - math.log(self.members)
