"""Divergence: a loss that grew by orders of magnitude ends the run as ``diverged``, never ``completed``.

The rule (``docs/training.md``): a finite loss ``L`` diverged when ``L > best + FACTOR * max(|best|, 1)``,
``best`` the lowest loss of the same kind seen so far in this session (training batches; validation
checks), ``FACTOR = 1e4``. The ``max(|best|, 1)`` keeps the rule meaningful for losses near zero and
for negative ones (a likelihood's). A non-finite loss is :class:`~rnnkit.training.task.NonFiniteLoss`
(``stopped_nonfinite``). Either way the run directory keeps the last epoch's weights: ``model.safetensors``
and ``checkpoints/last.ckpt`` are not rewritten after the stop, so they agree.
"""

from __future__ import annotations

import math

from rnnkit.errors import UserError

#: how many times its best scale a loss must exceed to count as diverged
FACTOR = 1e4


class Diverged(UserError):
    """The loss grew by orders of magnitude: training stopped (status ``diverged``)."""

    status = "diverged"

    def __init__(self, message: str, step: int, epoch: int) -> None:
        super().__init__(message)
        self.step = step
        self.epoch = epoch


def diverged(loss: float, best: float) -> bool:
    """Whether the finite ``loss`` exceeds ``best + FACTOR * max(|best|, 1)`` (``best`` inf: never)."""
    return math.isfinite(best) and loss > best + FACTOR * max(abs(best), 1.0)


def advice(what: str, loss: float, best: float, where: str) -> str:
    return (f"{what} diverged at {where}: {loss:.3g}, more than {FACTOR:g} times the scale of its best value "
            f"{best:.3g}; training stopped and the run keeps the last epoch's weights (model.safetensors = "
            "checkpoints/last.ckpt); lower the learning rate (--lr) or clip gradients (--clip-norm)")
