"""Conformal calibration of the forecast intervals (calibration.py)."""

import numpy as np
import torch

from rnnkit.apps.forecast import calibration
from rnnkit.apps.forecast.metrics import coverage


def _cover(point, samples, actual, level):
    a = (1 - level) / 2
    lo, hi = np.quantile(samples.numpy(), [a, 1 - a], axis=1)
    return coverage(actual.numpy(), lo, hi)


def test_calibration_raises_coverage_on_a_heteroscedastic_series():
    # noise whose scale grows along the series: a model fitted on the early part (unit-scale
    # samples) is overconfident later; windows from the later part calibrate it for the end
    g = torch.Generator().manual_seed(0)
    T, H, n = 400, 4, 200
    sd = torch.linspace(0.5, 4.0, T)
    y = torch.randn(T, generator=g) * sd
    origins = torch.arange(100, T - H + 1, H)
    actual = torch.stack([y[o:o + H] for o in origins])
    point = torch.zeros_like(actual)
    samples = torch.randn(len(origins), n, H, generator=g)
    val, test = slice(0, len(origins) // 2), slice(len(origins) // 2, None)
    factors = calibration.fit(point[val], samples[val], actual[val])
    assert factors.shape == (H, 2) and (factors > 1).all()
    calibrated = calibration.apply(point[test], samples[test], factors)
    for level in (0.8, 0.95):
        before = _cover(point[test], samples[test], actual[test], level)
        after = _cover(point[test], calibrated, actual[test], level)
        assert after > before + 0.2, (level, before, after)
        assert abs(after - level) < abs(before - level), (level, before, after)
    # exchangeable windows (every other one calibrates): coverage close to the level
    factors = calibration.fit(point[::2], samples[::2], actual[::2])
    calibrated = calibration.apply(point[1::2], samples[1::2], factors)
    for level in (0.8, 0.95):
        assert abs(_cover(point[1::2], calibrated, actual[1::2], level) - level) < 0.1


def test_unit_factors_leave_samples_alone_and_the_map_is_monotone():
    g = torch.Generator().manual_seed(1)
    point = torch.randn(5, 3, generator=g)
    samples = point[:, None] + torch.randn(5, 50, 3, generator=g)
    assert calibration.apply(point, samples, torch.ones(3, 2)) is samples
    out = calibration.apply(point, samples, torch.tensor([[2.0, 1.5]] * 3))
    order = samples.argsort(1)
    assert (out.gather(1, order).diff(dim=1) >= -1e-6).all()  # sample order kept
    torch.testing.assert_close(calibration.apply(point, samples, torch.tensor([[1.0, 1.0]] * 3)), samples)


def test_conformal_quantile_finite_sample():
    scores = torch.arange(1.0, 11.0)  # 10 scores: the 80% level takes the ceil(11 * 0.8) = 9th
    assert calibration.conformal_quantile(scores, 0.8) == 9.0
    assert calibration.conformal_quantile(torch.tensor([]), 0.8) == 1.0


def test_a_long_single_series_holds_out_validation_days():
    """validation=auto on one long series (>= 100 horizons): the last MIN_VAL_WINDOWS horizons are held
    out, back to back, and no training window reaches into them; a short one (AirPassengers' shape) keeps
    its last horizon for training, or with validation=holdout holds that one window out."""
    from rnnkit.apps.forecast.data import Series
    from rnnkit.apps.forecast.pipeline import MIN_VAL_WINDOWS, ForecastConfig, training_windows, validation_mode

    def series(n: int) -> Series:
        t = np.arange(n)
        return Series(["s"], [np.sin(t / 3.0) + 5], [t], [t], [np.zeros((n, 0))], [np.zeros((n, 0))])

    cfg = ForecastConfig(horizon=6, context=12)
    long, short = series(6 * 100), series(6 * 99)
    assert validation_mode(cfg, long) == "holdout" and validation_mode(cfg, short) == "last"
    train, val, held_out = training_windows(cfg, long, 12, 1, 0)
    assert held_out and len(val) == MIN_VAL_WINDOWS
    assert list(val.origin) == [600 - 6 * k for k in range(MIN_VAL_WINDOWS, 0, -1)]
    assert train.origin.max() + 6 <= val.origin.min()  # training targets end before validation starts
    _, val, held_out = training_windows(cfg, short, 12, 1, 0)
    assert not held_out and list(val.origin) == [594 - 6]
    explicit = ForecastConfig(horizon=6, context=12, validation="holdout")  # a short series spares one window
    _, val, held_out = training_windows(explicit, short, 12, 1, 0)
    assert held_out and list(val.origin) == [594 - 6]
