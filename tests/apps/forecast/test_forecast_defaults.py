"""Defaults chosen by measurement (issue #20): the automatic ensemble for small training sets, and the
hybrid point forecast ``combine_with`` (the median of the network's and statistical forecasts), automatic
for collections of univariate series."""

import json

import numpy as np
import pandas as pd
import pytest
from test_forecast_short import yearly_csv

import rnnkit
from _paths import DATA
from rnnkit.apps.forecast import ForecastModel
from rnnkit.apps.forecast.pipeline import (
    AUTO_COMBINE_MAX_SERIES,
    AUTO_ENSEMBLE_MEMBERS,
    AUTO_ENSEMBLE_WINDOWS,
    ForecastConfig,
    resolve_combine,
    resolve_ensemble,
)
from rnnkit.cli import main
from rnnkit.errors import UserError

AIR = DATA / "forecast_airpassengers.csv"
QUICK = ["--epochs", "2", "--hidden", "8", "-q", "--set", "n_samples=40"]


def test_auto_ensemble_rule_picks_what_it_says():
    cfg = ForecastConfig()
    assert cfg.ensemble == 0  # auto is the default
    assert resolve_ensemble(cfg, 85)[0] == AUTO_ENSEMBLE_MEMBERS == 5  # AirPassengers' 85 windows
    assert resolve_ensemble(cfg, AUTO_ENSEMBLE_WINDOWS - 1)[0] == 5
    members, why = resolve_ensemble(cfg, AUTO_ENSEMBLE_WINDOWS)
    assert members == 1 and "1000 training windows >= 1000" in why
    assert resolve_ensemble(ForecastConfig(ensemble=3), 10) == (3, "ensemble=3 (given)")
    assert resolve_ensemble(ForecastConfig(ensemble=1), 10)[0] == 1
    assert resolve_ensemble(ForecastConfig(lookbacks="1.5,2"), 10)[0] == 1  # the lookbacks are the ensemble
    assert resolve_ensemble(ForecastConfig(seeds=2), 10)[0] == 1


def test_auto_ensemble_in_a_run_is_reported_and_reloads(tmp_path, capsys):
    out = tmp_path / "auto"
    assert main(["forecast", "train", "--out", str(out), "--data", str(AIR), "--horizon", "6",
                 "--baselines", "naive", *QUICK]) == 0
    model = rnnkit.load(out)
    assert type(model).__name__ == "ForecastEnsemble" and model.members == 5
    report = json.loads((out / "evaluation.json").read_text())
    assert report["model"]["ensemble"]["members"] == 5
    assert "ensemble auto: 5 members" in report["model"]["ensemble"]["rule"]
    assert "5 member(s); ensemble auto" in (out / "evaluation.md").read_text()
    assert json.loads((out / "config.json").read_text())["task"]["ensemble"] == 5  # resolved, recorded
    one = tmp_path / "one"
    assert main(["forecast", "train", "--out", str(one), "--data", str(AIR), "--horizon", "6",
                 "--baselines", "naive", "--ensemble", "1", *QUICK]) == 0
    assert type(rnnkit.load(one)).__name__ == "Forecaster"
    assert "1 member(s); ensemble=1 (given)" in (one / "evaluation.md").read_text()


@pytest.mark.parametrize("args,message", [
    (["--set", "combine_with=arima,prophet"], "'prophet'"),
    (["--combine-with", "median"], "'median'"),
    (["--combine-with", "holt,holt"], "twice"),
    (["--set", "combine_how=mode"], "combine_how"),
    (["--ensemble", "-1"], "ensemble"),
])
def test_bad_combination_options_are_one_line_exit_2(args, message, tmp_path, capsys):
    code = main(["forecast", "train", "--out", str(tmp_path / "bad"), "--data", str(AIR), "--horizon", "6",
                 *QUICK, *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("rnnkit: error:") and err.count("\n") == 1, err
    assert message in err, err


def test_bad_combination_from_python_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="'prophet'"):
        ForecastModel(combine_with="prophet", max_epochs=1).fit(AIR, tmp_path / "py")


def test_combination_is_the_median_of_the_parts(tmp_path, capsys):
    """On a tiny series: the reported forecast is the median of the network alone, ARIMA and damped
    Holt at every step, the network alone and each part are in the report, and the intervals are the
    network's (the same quantiles as without the combination)."""
    air = pd.read_csv(AIR).iloc[:60]
    path = tmp_path / "tiny.csv"
    air.to_csv(path, index=False)
    common = ["--data", str(path), "--horizon", "4", "--baselines", "holt,arima,naive", "--ensemble", "1",
              "--seed", "3", *QUICK]
    assert main(["forecast", "train", "--out", str(tmp_path / "hyb"), *common, "--combine-with", "arima,holt"]) == 0
    assert main(["forecast", "train", "--out", str(tmp_path / "net"), *common]) == 0
    hyb = pd.read_csv(tmp_path / "hyb" / "evaluation_forecasts.csv")
    net = pd.read_csv(tmp_path / "net" / "evaluation_forecasts.csv")
    parts = np.stack([hyb["rnnkit-lstm-alone"], hyb["arima"], hyb["holt"]])
    np.testing.assert_allclose(hyb["forecast"], np.median(parts, 0), rtol=1e-12)
    np.testing.assert_allclose(hyb["rnnkit-lstm-alone"], net["forecast"], rtol=1e-9)  # same network, same seed
    for q in ("q0.1", "q0.9"):
        np.testing.assert_allclose(hyb[q], net[q], rtol=1e-9)
    report = json.loads((tmp_path / "hyb" / "evaluation.json").read_text())
    assert {"rnnkit-lstm", "rnnkit-lstm-alone", "arima", "holt"} <= set(report["metrics"])
    assert report["model"]["combine_with"] == {"methods": ["arima", "holt"], "how": "median"}


def test_combine_point_mean_and_fallback_windows():
    """``combine_how=mean`` averages; windows forecast by the fallback are left alone."""
    from rnnkit.apps.forecast import baselines as bl
    from rnnkit.apps.forecast.data import Series, make_windows
    from rnnkit.apps.forecast.pipeline import combine_point

    y = 10 + np.arange(12.0) + np.sin(np.arange(12.0))
    data = Series(ids=["a"], values=[y], pos=[np.arange(12)], times=[np.arange(12)], past=[np.zeros((12, 0))],
                  known=[np.zeros((12, 0))], static=np.zeros((1, 0)))
    w = make_windows(data, 6, 3, [np.array([3, 9])], 1)
    cfg = ForecastConfig(horizon=3, season=1, combine_with="naive,holt", combine_how="mean", n_samples=10)
    point = np.full((2, 3), 100.0)
    out = combine_point(cfg, data, w, point, np.array([True, False]))
    np.testing.assert_array_equal(out[0], point[0])
    want = (100.0 + bl.naive(y[:9], 3, 1) + bl.holt(y[:9], 3, 1)) / 3
    np.testing.assert_allclose(out[1], want)
    np.testing.assert_array_equal(w.network, point)


def _series(n: int, known: int = 0):
    from rnnkit.apps.forecast.data import Series

    t = np.arange(20)
    return Series(ids=[f"s{i}" for i in range(n)], values=[t + 1.0] * n, pos=[t] * n, times=[t] * n,
                  past=[np.zeros((20, 0))] * n, known=[np.zeros((20, known))] * n, static=np.zeros((n, 0)),
                  known_names=[f"k{j}" for j in range(known)])


def test_combine_auto_is_the_hybrid_for_collections_of_univariate_series():
    auto = ForecastConfig(horizon=3)
    assert auto.combine_with == "auto" and auto.combine_list() == []  # unresolved: nothing combined yet
    assert resolve_combine(auto, _series(10))[0] == "arima,ets"
    assert resolve_combine(auto, _series(AUTO_COMBINE_MAX_SERIES))[0] == "arima,ets"
    for data, why in ((_series(9), "9 series < 10"), (_series(AUTO_COMBINE_MAX_SERIES + 1), "the statistical fits"),
                      (_series(12, known=1), "covariates")):
        combine, rule = resolve_combine(auto, data)
        assert combine == "" and why in rule, rule
    combine, rule = resolve_combine(auto, _series(12), season=52)  # weekly: a seasonal ARIMA is not cheap
    assert combine == "" and "ARIMA is not cheap" in rule
    assert resolve_combine(ForecastConfig(horizon=3, combine_with="none"), _series(12)) == (
        "", "combine_with=none (given)")
    assert resolve_combine(ForecastConfig(horizon=3, combine_with="theta"), _series(3))[0] == "theta"


def test_a_collection_run_records_the_automatic_hybrid(tmp_path):
    path = yearly_csv(tmp_path, {f"s{i}": 16 for i in range(10)})
    out = tmp_path / "run"
    assert main(["forecast", "train", "--out", str(out), "--data", str(path), "--horizon", "3",
                 "--baselines", "naive", *QUICK]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["task"]["combine_with"] == "arima,ets"  # resolved: predict and evaluate combine the same
    assert saved["data_info"]["combine_rule"].startswith("combine_with auto: arima,ets")
    report = json.loads((out / "evaluation.json").read_text())
    assert report["model"]["combine_with"]["methods"] == ["arima", "ets"]
    assert {"rnnkit-lstm", "rnnkit-lstm-alone"} <= set(report["metrics"])
    assert "combine_with auto: arima,ets" in (out / "evaluation.md").read_text()
    assert main(["forecast", "evaluate", str(out), "--data", str(path), "-q"]) == 0
    again = json.loads((out / "evaluation.json").read_text())
    assert again["metrics"]["rnnkit-lstm"]["mase"] == pytest.approx(report["metrics"]["rnnkit-lstm"]["mase"])
