"""Conformal calibration of the forecast distribution on held-out validation windows.

Split conformal prediction (Vovk et al. 2005; Romano et al. 2019's CQR form): on windows the model
did not train on, the score of an outcome ``y`` at horizon step ``k`` is its distance from the point
forecast in units of the model's own half-width of the central ``level`` interval (the upper half
above the point, the lower half below). The conformal quantile of the scores, ``c``, is the factor
by which that half-width must grow (or shrink) to hold ``level`` of the outcomes. Factors are fitted
at 80% and 95%, per horizon step when there are enough windows (else pooled over steps), and applied
to the samples by a monotone piecewise-linear map of each sample's distance from the point forecast:
a distance of ``t`` half-widths(80%) becomes ``c80 * t`` up to the 80% edge, then linear up to the
95% edge scaled by ``c95``, and ``c95 * t`` beyond. Factors of 1 leave the samples unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

LEVELS = (0.8, 0.95)
#: fewer validation windows than this: one pair of factors for every horizon step
MIN_WINDOWS_PER_STEP = 30


def _edges(samples: Tensor, level: float) -> Tensor:
    """(2, B, H): the lower and upper edges of the central ``level`` interval of ``samples (B, n, H)``."""
    a = (1 - level) / 2
    return torch.quantile(samples, torch.tensor([a, 1 - a], dtype=samples.dtype), dim=1)


def _half_widths(point: Tensor, samples: Tensor, level: float) -> tuple[Tensor, Tensor]:
    """(lower, upper) half-widths (B, H) of the central ``level`` interval of ``samples (B, n, H)``."""
    q = _edges(samples, level)
    return (point - q[0]).clamp_min(1e-12), (q[1] - point).clamp_min(1e-12)


def conformal_quantile(scores: Tensor, level: float) -> float:
    """The ``ceil((n + 1) level) / n`` empirical quantile (finite-sample valid split conformal)."""
    s = scores[torch.isfinite(scores)].sort().values
    n = len(s)
    if n == 0:
        return 1.0
    k = min(n, math.ceil((n + 1) * level))
    return float(s[k - 1])


def fit(point: Tensor, samples: Tensor, actual: Tensor) -> Tensor:
    """Factors ``(H, 2)`` (80%, 95%) from validation forecasts ``point (B, H)``, ``samples (B, n, H)``
    and outcomes ``actual (B, H)`` (NaN where unknown)."""
    H = point.shape[1]
    out = torch.ones(H, len(LEVELS), dtype=torch.float32)
    per_step = point.shape[0] >= MIN_WINDOWS_PER_STEP
    for j, level in enumerate(LEVELS):
        lo, hi = _half_widths(point, samples, level)
        d = actual - point
        score = torch.where(d >= 0, d / hi, -d / lo)
        if per_step:
            out[:, j] = torch.tensor([conformal_quantile(score[:, k], level) for k in range(H)])
        else:
            out[:, j] = conformal_quantile(score.reshape(-1), level)
    out = out.clamp(1e-3, 1e3)
    return out


def _width(samples: Tensor, level: float) -> Tensor:
    """Widths (B, H) of the central ``level`` interval of ``samples (B, n, H)``."""
    q = _edges(samples, level)
    return (q[1] - q[0]).clamp_min(1e-12)


def match_widths(samples: Tensor, target: Tensor) -> Tensor:
    """Factors ``(H, 2)`` that make the 80% / 95% intervals of ``samples (B, n, H)`` as wide as those of
    ``target (B, n, H)`` (the same windows forecast by another model, calibrated): the median ratio of
    the widths over windows, per horizon step when there are enough windows (else pooled over steps).

    For the refit (pipeline.refit_model): the model trained again on every window cannot be calibrated
    on windows it trained on, so its intervals take the width of the held-out model's calibrated ones."""
    H = samples.shape[2]
    out = torch.ones(H, len(LEVELS), dtype=torch.float32)
    per_step = samples.shape[0] >= MIN_WINDOWS_PER_STEP
    for j, level in enumerate(LEVELS):
        ratio = _width(target, level) / _width(samples, level)  # (B, H)
        out[:, j] = ratio.median(0).values if per_step else ratio.reshape(-1).median()
    return out.clamp(1e-3, 1e3)


def apply(point: Tensor, samples: Tensor, factors: Tensor) -> Tensor:
    """``samples (B, n, H)`` mapped so that their 80% / 95% intervals grow by ``factors (H, 2)``."""
    if not torch.compiler.is_exporting() and bool((factors == 1).all()):  # an export keeps the map: data-free
        return samples
    lo80, hi80 = _half_widths(point, samples, LEVELS[0])
    lo95, hi95 = _half_widths(point, samples, LEVELS[1])
    d = samples - point[:, None]
    up = d >= 0
    w80 = torch.where(up, hi80[:, None], lo80[:, None])
    w95 = torch.where(up, hi95[:, None], lo95[:, None])
    c80, c95 = factors[:, 0].to(d.dtype), factors[:, 1].to(d.dtype)
    t = d.abs() / w80
    r = (w95 / w80).clamp_min(1 + 1e-6)  # the 95% edge in 80% half-widths
    edge = torch.maximum(c95 * r, c80)  # monotone: the 95% edge never inside the 80% one
    middle = c80 + (t - 1) * (edge - c80) / (r - 1)
    g = torch.where(t <= 1, c80 * t, torch.where(t <= r, middle, edge * t / r))
    return point[:, None] + torch.sign(d) * g * w80
