"""Forecast accuracy: MASE, sMAPE, MAPE, MAE, RMSE (point), CRPS and interval coverage (probabilistic).

Definitions (per forecast window of ``h`` steps, then averaged over windows; RMSE pools the squared
errors of every step of every window):

- MASE = mean|y - f| / mean_{t>m}|x_t - x_{t-m}| over the window's history ``x`` (season ``m``;
  ``m = 1`` when the history is shorter than ``m + 1``), Hyndman & Koehler (2006), as in M4.
- sMAPE = 200/h * sum |y - f| / (|y| + |f|) (M4's definition, in percent; 0/0 counts 0).
- MAPE = 100/h * sum |y - f| / |y|.
- CRPS from samples: E|X - y| - 1/2 E|X - X'| (the energy form, exact for the empirical
  distribution of the samples, computed in O(n log n) from the sorted samples);
  :func:`crps_gaussian` is the closed form for N(mu, sigma^2) (Gneiting & Raftery 2007).
  A point forecast's CRPS is its absolute error.
- coverage(level) = share of ``y`` inside the central ``level`` interval of the forecast quantiles.
"""

from __future__ import annotations

import math

import numpy as np


def mae(y, f) -> float:
    return float(np.mean(np.abs(np.asarray(y) - np.asarray(f))))


def rmse(y, f) -> float:
    return float(np.sqrt(np.mean((np.asarray(y) - np.asarray(f)) ** 2)))


def mape(y, f) -> float:
    y, f = np.asarray(y, float), np.asarray(f, float)
    return float(100 * np.mean(np.abs(y - f) / np.abs(y)))


def smape(y, f) -> float:
    y, f = np.asarray(y, float), np.asarray(f, float)
    den = np.abs(y) + np.abs(f)
    ratio = np.divide(np.abs(y - f), den, out=np.zeros_like(den), where=den > 0)
    return float(200 * np.mean(ratio))


def mase_scale(history, season: int) -> float:
    """Mean absolute seasonal difference of the history (the in-sample seasonal naive error)."""
    x = np.asarray(history, float)
    m = season if len(x) > season else 1
    if len(x) <= m:
        return math.nan
    return float(np.mean(np.abs(x[m:] - x[:-m])))


def mase(y, f, history, season: int) -> float:
    scale = mase_scale(history, season)
    if not scale > 0:
        return math.nan
    return mae(y, f) / scale


def crps_samples(samples, y) -> np.ndarray:
    """CRPS of the empirical distribution of ``samples (..., n)`` at ``y (...)``."""
    x = np.sort(np.asarray(samples, float), axis=-1)
    y = np.asarray(y, float)
    n = x.shape[-1]
    term1 = np.mean(np.abs(x - y[..., None]), axis=-1)
    weights = (2 * np.arange(1, n + 1) - n - 1) / (n * n)  # E|X-X'| = 2/n^2 sum (2i-n-1) x_(i)
    term2 = np.sum(x * weights, axis=-1)  # = 1/2 E|X-X'|
    return term1 - term2


def crps_gaussian(mu, sigma, y) -> np.ndarray:
    """Closed-form CRPS of N(mu, sigma^2) at y."""
    from scipy.stats import norm

    mu, sigma, y = (np.asarray(a, float) for a in (mu, sigma, y))
    z = (y - mu) / sigma
    return sigma * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / math.sqrt(math.pi))


def coverage(y, lo, hi) -> float:
    y = np.asarray(y, float)
    return float(np.mean((y >= np.asarray(lo)) & (y <= np.asarray(hi))))


def window_metrics(y, f, history, season: int, samples=None, levels=(0.8, 0.95)) -> dict[str, float]:
    """Metrics of one window (``y``, point ``f`` of ``h`` steps; ``samples (h, n)`` if probabilistic)."""
    out = {"mae": mae(y, f), "mse": float(np.mean((np.asarray(y) - np.asarray(f)) ** 2)), "mape": mape(y, f),
           "smape": smape(y, f), "mase": mase(y, f, history, season)}
    if samples is not None:
        out["crps"] = float(np.mean(crps_samples(samples, y)))
        for level in levels:
            a = (1 - level) / 2
            lo, hi = np.quantile(samples, [a, 1 - a], axis=-1)
            out[f"coverage{round(level * 100)}"] = coverage(y, lo, hi)
    else:
        out["crps"] = out["mae"]  # a point forecast's CRPS is its absolute error
    return out


def aggregate(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean over windows (RMSE: the root of the pooled mean squared error)."""
    keys = sorted({k for r in rows for k in r})
    out = {}
    for k in keys:
        vals = np.array([r[k] for r in rows if k in r], float)
        vals = vals[np.isfinite(vals)]
        out[k] = float(np.mean(vals)) if len(vals) else math.nan
    if "mse" in out:
        out["rmse"] = math.sqrt(out.pop("mse"))
    return out
