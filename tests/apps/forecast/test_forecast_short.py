"""Short series are first-class: left padding with a mask, a minimum context, the named fallback for
series shorter than that, and a hold-out that adapts; lookback ensembles train and forecast."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rnnkit.apps.forecast.data import load_series, make_windows
from rnnkit.apps.forecast.ensemble import ForecastEnsemble
from rnnkit.apps.forecast.model import Forecaster
from rnnkit.cli import main

QUICK = ["--epochs", "2", "--hidden", "8", "-q", "--set", "n_samples=40"]


def yearly_csv(tmp_path: Path, lengths: dict[str, int], name: str = "y.csv") -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for sid, n in lengths.items():
        y = 100 + np.cumsum(rng.normal(1.0, 3.0, n))
        rows += [(sid, str(1990 + t), float(v)) for t, v in enumerate(y)]
    path = tmp_path / name
    pd.DataFrame(rows, columns=["series_id", "timestamp", "value"]).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("head", ["direct", "autoregressive"])
@pytest.mark.parametrize("scaling", ["window", "last", "holt"])
def test_padded_steps_never_change_a_forecast(head, scaling):
    torch.manual_seed(0)
    net = Forecaster(context=10, horizon=3, n_ctx_features=2, n_fut_features=2, head=head, scaling=scaling,
                     hidden=8, masked=True).eval()
    y = torch.randn(2, 10) + 5
    y[:, :6] = float("nan")  # 4 real steps, 6 of padding
    x = torch.randn(2, 10, 2)
    xf, st = torch.randn(2, 3, 2), torch.zeros(2, 0)
    x2 = x.clone()
    x2[:, :6] = torch.randn(2, 6, 2) * 100  # whatever the padding holds
    g = [torch.Generator().manual_seed(1) for _ in range(2)]
    p1, s1 = net.forecast(y, x, xf, st, 20, g[0])
    p2, s2 = net.forecast(y, x2, xf, st, 20, g[1])
    assert torch.isfinite(p1).all()
    torch.testing.assert_close(p1, p2)
    torch.testing.assert_close(s1, s2)
    loss = net.loss(y, x, xf, st, torch.randn(2, 3))
    assert torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_damped_holt_anchor_is_the_textbook_recursion():
    """The holt anchor equals damped-trend exponential smoothing written out step by step (first real
    step as the level, zero trend), skips the left padding, and its forecast damps the trend."""
    from rnnkit.apps.forecast.model import damped_holt

    alpha, beta, phi, H = 0.4, 0.2, 0.9, 4
    rng = np.random.default_rng(3)
    y = np.cumsum(rng.normal(1.0, 2.0, (3, 9)), 1) + 50
    y[1, :3] = np.nan  # padding
    real = np.isfinite(y)
    weights = (torch.tensor(w, dtype=torch.float64) for w in (alpha, beta, phi))
    fits, fut = damped_holt(torch.tensor(np.nan_to_num(y)), torch.tensor(real), *weights, H)
    for b in range(3):
        values = y[b][real[b]]
        level, trend, expect = values[0], 0.0, [values[0]]
        for v in values[1:]:
            fit = level + phi * trend
            new_level = alpha * v + (1 - alpha) * fit
            trend = beta * (new_level - level) + (1 - beta) * phi * trend
            level = new_level
            expect.append(fit)
        np.testing.assert_allclose(fits[b][torch.tensor(real[b])].numpy(), expect, rtol=1e-12)
        path = [level + sum(phi ** j for j in range(1, k + 1)) * trend for k in range(1, H + 1)]
        np.testing.assert_allclose(fut[b].numpy(), path, rtol=1e-12)


def test_windows_are_left_padded_with_nan(tmp_path):
    s = load_series(yearly_csv(tmp_path, {"a": 6}))
    w = make_windows(s, 8, 2, [np.array([4])], season=1)
    assert np.isnan(w.y_ctx[0, :4]).all() and np.isfinite(w.y_ctx[0, 4:]).all()
    assert w.y_ctx[0, 4:].tolist() == pytest.approx(s.values[0][:4].tolist())


def test_lookback_ensemble_median_of_members():
    torch.manual_seed(0)
    ens = ForecastEnsemble(4, [4, 4, 8, 8], "median", context=8, horizon=2, hidden=8, head="direct", masked=True)
    y = torch.randn(3, 8)
    args = (y, torch.zeros(3, 8, 0), torch.zeros(3, 2, 0), torch.zeros(3, 0))
    point, samples = ens.forecast(*args, n_samples=8)
    members = torch.stack([net.forecast(y[:, -c:], args[1][:, -c:], *args[2:], 2)[0]
                           for net, c in zip(ens.nets, ens.contexts, strict=True)])
    torch.testing.assert_close(point, members.quantile(0.5, 0))
    assert samples.shape == (3, 8, 2) and ens.member_losses(*args, torch.randn(3, 2)).shape == (4,)


def test_short_collection_trains_and_names_the_fallback(tmp_path, capsys):
    path = yearly_csv(tmp_path, {"long1": 30, "long2": 24, "mid": 12, "tiny": 9})
    out = tmp_path / "run"
    code = main(["forecast", "train", "--out", str(out), "--data", str(path), "--horizon", "6",
                 "--set", "lookbacks=1,2", "--set", "validation=holdout", *QUICK])
    err = capsys.readouterr().err
    assert code == 0, err
    # 'tiny' has 3 values before its 6 held-out steps: below min_context 4, the fallback forecasts it
    assert "fallback 'naive'" in err and "tiny" in err
    report = json.loads((out / "evaluation.json").read_text())
    assert report["series"] == 4 and report["fallback"]["series"] == ["tiny"]
    assert report["fallback"]["method"] == "naive"
    fc = pd.read_csv(out / "evaluation_forecasts.csv")
    methods = fc.groupby("series_id")["method"].first()
    assert methods["tiny"] == "fallback:naive" and methods["long1"] == "rnnkit-lstm"
    tiny = fc[fc["series_id"] == "tiny"]
    assert tiny["forecast"].nunique() == 1  # the naive forecast: the last value
    assert "fallback `naive`" in (out / "evaluation.md").read_text()
    assert "median" in report["metrics"] and "theta" in report["metrics"]
    for level in ("coverage80", "coverage95"):
        assert 0 <= report["metrics"]["rnnkit-lstm"][level] <= 1
    saved = json.loads((out / "config.json").read_text())
    assert saved["data_info"]["contexts"] == [6, 12] and saved["data_info"]["val_held_out"]

    pred = tmp_path / "p.csv"
    assert main(["forecast", "predict", str(out), "--output", str(pred), "--data", str(path), "-q"]) == 0
    p = pd.read_csv(pred)
    assert set(p["series_id"]) == {"long1", "long2", "mid", "tiny"}
    assert (p.groupby("series_id")["method"].first() == "model").all()  # every series has >= 4 values


def test_three_point_series_predicted_by_the_fallback(tmp_path, capsys):
    path = yearly_csv(tmp_path, {"a": 30, "b": 25, "three": 3})
    out = tmp_path / "run"
    assert main(["forecast", "train", "--out", str(out), "--data", str(path), "--horizon", "4", *QUICK]) == 0
    capsys.readouterr()
    pred = tmp_path / "p.csv"
    assert main(["forecast", "predict", str(out), "--output", str(pred), "--data", str(path), "-q"]) == 0
    err = capsys.readouterr().err
    assert "fallback 'naive'" in err and "three" in err
    p = pd.read_csv(pred)
    three = p[p["series_id"] == "three"]
    assert (three["method"] == "fallback:naive").all() and len(three) == 4
    last = pd.read_csv(path).query("series_id == 'three'")["value"].iloc[-1]
    assert three["forecast"].tolist() == pytest.approx([last] * 4)


def test_holdout_skipped_with_a_note_when_series_are_too_short(tmp_path, capsys):
    path = yearly_csv(tmp_path, {"a": 9, "b": 8})
    out = tmp_path / "run"
    code = main(["forecast", "train", "--out", str(out), "--data", str(path), "--horizon", "4", *QUICK])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "no held-out evaluation" in err and not (out / "evaluation.json").exists()
    assert (out / "model.safetensors").exists()
