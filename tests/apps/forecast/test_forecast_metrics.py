"""Forecast metrics against independent references: closed forms, brute force, hand-computed values,
numerical integration and statsmodels' own error measures."""

import math

import numpy as np
import pytest
from scipy import integrate, stats
from statsmodels.tools import eval_measures

from rnnkit.apps.forecast import metrics as M
from rnnkit.apps.forecast.baselines import seasonal_naive


def test_crps_samples_matches_gaussian_closed_form():
    rng = np.random.default_rng(0)
    mu, sigma = 1.5, 2.0
    samples = rng.normal(mu, sigma, size=200_000)
    for y in (-3.0, 0.0, 1.5, 4.0):
        est = float(M.crps_samples(samples, np.array(y)))
        exact = float(M.crps_gaussian(mu, sigma, y))
        assert est == pytest.approx(exact, rel=1e-2)


def test_crps_gaussian_closed_form_matches_integral():
    # CRPS(F, y) = integral of (F(x) - 1{x >= y})^2 dx, integrated numerically
    mu, sigma, y = 0.3, 0.7, 1.1
    left = integrate.quad(lambda x: stats.norm.cdf(x, mu, sigma) ** 2, -np.inf, y)[0]
    right = integrate.quad(lambda x: (1 - stats.norm.cdf(x, mu, sigma)) ** 2, y, np.inf)[0]
    assert float(M.crps_gaussian(mu, sigma, y)) == pytest.approx(left + right, rel=1e-6)


def test_crps_samples_equals_brute_force_energy_form():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=37), 0.4
    brute = np.mean(np.abs(x - y)) - 0.5 * np.mean(np.abs(x[:, None] - x[None, :]))
    assert float(M.crps_samples(x, np.array(y))) == pytest.approx(brute, rel=1e-12)
    # a point forecast (all samples equal) scores its absolute error
    assert float(M.crps_samples(np.full(5, 2.0), np.array(3.5))) == pytest.approx(1.5)


def test_mase_smape_mape_hand_computed():
    history = np.array([1.0, 3.0, 2.0, 4.0, 3.0, 5.0])
    y, f = np.array([6.0, 4.0]), np.array([5.0, 5.0])
    # season 2: |2-1|,|4-3|,|3-2|,|5-4| -> scale 1; MAE 1 -> MASE 1
    assert M.mase(y, f, history, 2) == pytest.approx(1.0)
    # season 1: |2|,|1|,|2|,|1|,|2| -> 8/5; MASE = 1 / 1.6
    assert M.mase(y, f, history, 1) == pytest.approx(1 / 1.6)
    # sMAPE (M4) = 200/2 * (1/11 + 1/9)
    assert M.smape(y, f) == pytest.approx(100 * (1 / 11 + 1 / 9))
    assert M.mape(y, f) == pytest.approx(50 * (1 / 6 + 1 / 4))
    assert M.smape(np.zeros(2), np.zeros(2)) == 0.0


def test_mae_rmse_match_statsmodels():
    rng = np.random.default_rng(2)
    y, f = rng.normal(size=50), rng.normal(size=50)
    assert M.mae(y, f) == pytest.approx(eval_measures.meanabs(y, f))
    assert M.rmse(y, f) == pytest.approx(eval_measures.rmse(y, f))


def test_coverage_and_aggregate():
    assert M.coverage([1, 2, 3, 4], [0, 0, 0, 0], [2, 2, 2, 5]) == 0.75
    rows = [{"mse": 4.0, "mae": 1.0}, {"mse": 0.0, "mae": 3.0}]
    agg = M.aggregate(rows)
    assert agg["rmse"] == pytest.approx(math.sqrt(2.0)) and agg["mae"] == 2.0


def test_window_metrics_gaussian_samples_cover_at_nominal_rate():
    rng = np.random.default_rng(3)
    y = rng.normal(size=400)
    samples = rng.normal(size=(400, 2000))
    out = M.window_metrics(y, np.zeros(400), rng.normal(size=30), 1, samples)
    assert out["coverage80"] == pytest.approx(0.8, abs=0.06)
    assert out["coverage95"] == pytest.approx(0.95, abs=0.04)
    assert out["crps"] == pytest.approx(float(np.mean(M.crps_gaussian(0.0, 1.0, y))), rel=0.02)


def test_seasonal_naive_repeats_last_season():
    assert seasonal_naive(np.arange(10.0), 5, 4).tolist() == [6.0, 7.0, 8.0, 9.0, 6.0]
