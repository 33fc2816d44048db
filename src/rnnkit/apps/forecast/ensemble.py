"""Ensembles of forecasters over lookback lengths x seeds (N-BEATS style).

Every member is a :class:`Forecaster` with its own context length and initialisation; all are
trained together on the same batches (windows of the longest context, left-padded where a series is
short; each member reads the last ``contexts[i]`` steps). The point forecast is the median of the
members' point forecasts (``combine="median"``: robust to one bad member, as in N-BEATS) or their
mean; the samples are pooled (an equal-weight mixture).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.errors import UserError
from rnnkit.io.registry import register_model

from . import calibration
from .model import Forecaster

COMBINES = ("median", "mean")


@register_model("forecast.ensemble")
class ForecastEnsemble(nn.Module):
    def __init__(self, members: int = 5, contexts: list[int] | None = None, combine: str = "mean",
                 calibrated: bool = False, **config: Any) -> None:
        super().__init__()
        if members < 2:
            raise UserError(f"an ensemble needs at least 2 members, got {members}")
        if combine not in COMBINES:
            raise UserError(f"unknown combine {combine!r}; choose one of: {', '.join(COMBINES)}")
        contexts = [int(c) for c in contexts] if contexts else [int(config["context"])] * members
        if len(contexts) != members:
            raise UserError(f"an ensemble of {members} members needs {members} contexts, got {len(contexts)}")
        self.members, self.contexts, self.combine = members, contexts, combine
        self.nets = nn.ModuleList(Forecaster(**{**config, "context": c}) for c in contexts)
        self.horizon = self.nets[0].horizon
        self._config = dict(config)
        self.calibrated = calibrated
        if calibrated:  # conformal factors of the pooled samples (calibration.py)
            self.register_buffer("calib", torch.ones(self.horizon, 2))

    def get_config(self) -> dict[str, Any]:
        return {"members": self.members, "contexts": list(self.contexts), "combine": self.combine,
                "calibrated": self.calibrated, **self._config}

    def _views(self, batch: tuple[Tensor, ...]):
        y_ctx, x_ctx, *rest = batch
        for net, c in zip(self.nets, self.contexts, strict=True):
            yield net, (y_ctx[:, -c:], x_ctx[:, -c:], *rest)

    def member_losses(self, *batch: Tensor) -> Tensor:
        return torch.stack([net.loss(*b) for net, b in self._views(batch)])

    def loss(self, *batch: Tensor) -> Tensor:
        return self.member_losses(*batch).mean()

    @torch.no_grad()
    def forecast(self, y_ctx, x_ctx, x_fut, static, n_samples: int = 200, generator=None, noise=None):
        """The members' point forecasts combined and their samples pooled: ``ceil(n_samples /
        members)`` each. ``noise`` (B, members x k, H): member ``m`` takes draws ``m k .. (m + 1) k - 1``
        (:meth:`Forecaster.forecast`)."""
        per = max(1, -(-n_samples // self.members))
        if noise is not None:
            per = noise.shape[1] // self.members
            if per * self.members != noise.shape[1] or per == 0:
                raise UserError(f"noise holds {noise.shape[1]} draws per window; an ensemble of {self.members} "
                                "takes a positive multiple of its member count")
        views = self._views((y_ctx, x_ctx, x_fut, static))
        outs = [net.forecast(*b, per, generator, None if noise is None else noise[:, m * per:(m + 1) * per])
                for m, (net, b) in enumerate(views)]
        points = torch.stack([p for p, _ in outs])
        point = points.quantile(0.5, 0) if self.combine == "median" else points.mean(0)  # 2 members: their mean
        samples = torch.cat([s for _, s in outs], 1)
        if self.calibrated:
            samples = calibration.apply(point, samples, self.calib)
        return point, samples
