"""Baselines scored on the same windows as the model: naive, seasonal naive, damped Holt, ETS, Theta,
ARIMA (statsmodels) and ``median``, the median of the statistical ones' forecasts (the bar of
forecasting competitions: combinations of simple methods are hard to beat).

Each takes the history of one window and returns ``(point (h,), samples (h, n) or None)``.
ETS: Holt-Winters exponential smoothing with a damped additive trend and a multiplicative season
(additive if the series is not positive; none if shorter than two seasons), fitted by maximum
likelihood. Damped Holt: the same without a season. Theta: statsmodels' ``ThetaModel``
(Assimakopoulos & Nikolopoulos 2000; multiplicative deseasonalising when the history holds two
seasons). ARIMA: the airline model SARIMA(0,1,1)(0,1,1)_m on log values for positive series (Box &
Jenkins), ARIMA(1,1,1) without a season; Gaussian predictive intervals (on the log scale when logged).
A baseline that fails to fit a window falls back to the seasonal naive forecast (counted in the report).
ETS and ARIMA see the last ``max(6 m, 200)`` steps of a long history (cost; the older past barely
changes exponential smoothing).
"""

from __future__ import annotations

import warnings

import numpy as np

BASELINES = ("naive", "snaive", "holt", "ets", "theta", "arima", "median")
#: the statistical methods whose median is the ``median`` row
COMBINED = ("holt", "ets", "theta", "arima")


def naive(history: np.ndarray, h: int, season: int) -> np.ndarray:
    return np.full(h, history[-1], dtype=float)


def seasonal_naive(history: np.ndarray, h: int, season: int) -> np.ndarray:
    m = season if season > 1 and len(history) >= season else 1
    last = history[-m:]
    return np.array([last[i % m] for i in range(h)], dtype=float)


def _recent(history: np.ndarray, season: int) -> np.ndarray:
    return np.asarray(history, float)[-max(6 * season, 200):]


def ets(history: np.ndarray, h: int, season: int) -> np.ndarray:
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    x = _recent(history, season)
    positive = bool(np.all(x > 0))
    seasonal = None
    if season > 1 and len(x) >= 2 * season + 2:
        seasonal = "mul" if positive else "add"
    trend = "add" if len(x) >= 10 else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ExponentialSmoothing(x, trend=trend, damped_trend=trend is not None, seasonal=seasonal,
                                     seasonal_periods=season if seasonal else None,
                                     initialization_method="estimated")
        fc = np.asarray(model.fit().forecast(h), float)
    if not np.all(np.isfinite(fc)):
        raise ValueError("ETS forecast is not finite")
    return fc


def holt(history: np.ndarray, h: int, season: int) -> np.ndarray:
    return ets(history, h, 1)


def theta(history: np.ndarray, h: int, season: int) -> np.ndarray:
    from statsmodels.tsa.forecasting.theta import ThetaModel

    x = _recent(history, season)
    if len(x) < 3:
        raise ValueError("Theta needs 3 values")
    seasonal = season > 1 and len(x) >= 2 * season
    method = "multiplicative" if bool(np.all(x > 0)) else "additive"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ThetaModel(x, period=season if seasonal else 1, deseasonalize=seasonal, method=method)
        fc = np.asarray(model.fit().forecast(h), float)
    if not np.all(np.isfinite(fc)):
        raise ValueError("Theta forecast is not finite")
    return fc


def arima(history: np.ndarray, h: int, season: int, n_samples: int = 0):
    """(point, samples or None): the airline model on logs (positive series) or ARIMA(1,1,1)."""
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    x = _recent(history, season)
    log = bool(np.all(x > 0))
    z = np.log(x) if log else x
    if season > 1 and len(x) >= 2 * season + 2:
        order, sorder = (0, 1, 1), (0, 1, 1, season)
    else:
        order, sorder = (1, 1, 1), (0, 0, 0, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = SARIMAX(z, order=order, seasonal_order=sorder).fit(disp=False)
        fc = res.get_forecast(h)
        mu, sd = np.asarray(fc.predicted_mean, float), np.sqrt(np.asarray(fc.var_pred_mean, float))
    if not np.all(np.isfinite(mu)):
        raise ValueError("ARIMA forecast is not finite")
    samples = None
    if n_samples:
        rng = np.random.default_rng(0)
        samples = mu[:, None] + sd[:, None] * rng.standard_normal((h, n_samples))
        samples = np.exp(samples) if log else samples
    point = np.exp(mu) if log else mu  # the median on the original scale
    return point, samples


def forecast(name: str, history: np.ndarray, h: int, season: int, n_samples: int = 200):
    """(point, samples or None, fell_back)."""
    try:
        if name == "naive":
            return naive(history, h, season), None, False
        if name == "snaive":
            return seasonal_naive(history, h, season), None, False
        if name == "ets":
            return ets(history, h, season), None, False
        if name == "holt":
            return holt(history, h, season), None, False
        if name == "theta":
            return theta(history, h, season), None, False
        if name == "arima":
            p, s = arima(history, h, season, n_samples)
            return p, s, False
    except (ValueError, np.linalg.LinAlgError, IndexError, ZeroDivisionError):
        return seasonal_naive(history, h, season), None, True
    raise ValueError(f"unknown baseline {name!r}")
