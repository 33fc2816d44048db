"""``rnnkit forecast`` end to end on small real series: train, evaluate, predict, backtest, the
Transformer baseline, the autoregressive Student-t model, covariates; files, plots, CSV round trips."""

import json

import numpy as np
import pandas as pd
import pytest

import rnnkit
from _paths import DATA
from rnnkit.cli import main

AIR = DATA / "forecast_airpassengers.csv"
ELEC = DATA / "forecast_elecdemand_2weeks.csv"
QUICK = ["--epochs", "2", "--hidden", "8", "-q", "--set", "n_samples=50"]


def run(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def test_train_evaluate_predict_airpassengers(tmp_path, capsys):
    out = tmp_path / "air"
    run(["forecast", "train", "--out", str(out), "--data", str(AIR), "--horizon", "12", "--cell", "gru", *QUICK],
        capsys)
    for name in ("config.json", "model.safetensors", "metrics.json", "evaluation.json", "evaluation.md",
                 "evaluation_forecasts.csv", "evaluation.png"):
        assert (out / name).exists(), name
    fc = pd.read_csv(out / "evaluation_forecasts.csv")
    assert len(fc) == 12 and fc["timestamp"].iloc[0].startswith("1960-01-01")
    assert fc["actual"].tolist()[:3] == [417, 391, 419]
    assert (fc["q0.1"] <= fc["q0.9"]).all()
    # the seasonal naive forecast of 1960 is 1959 repeated; its RMSE on 1960 is 50.71
    assert fc["snaive"].tolist()[:3] == [360, 342, 406]
    import json

    report = json.loads((out / "evaluation.json").read_text())
    assert report["metrics"]["snaive"]["rmse"] == pytest.approx(50.708, abs=1e-3)
    assert set(report["metrics"]) == {"rnnkit-gru", "naive", "snaive", "ets", "theta", "arima", "median"}
    assert np.isfinite(report["metrics"]["rnnkit-gru"]["crps"])

    model = rnnkit.load(out)  # config.json + safetensors, no pickle
    assert type(model).__name__ == "ForecastEnsemble"  # 85 windows: the automatic ensemble of 5
    assert model.members == 5 and report["model"]["ensemble"]["members"] == 5
    # the training file lies outside the run directory: read again only when named (docs/security.md)
    assert main(["forecast", "evaluate", str(out), "-q"]) == 2 and "--data" in capsys.readouterr().err
    run(["forecast", "evaluate", str(out), "--data", str(AIR), "-q"], capsys)
    again = json.loads((out / "evaluation.json").read_text())
    assert again["metrics"]["rnnkit-gru"]["rmse"] == pytest.approx(report["metrics"]["rnnkit-gru"]["rmse"], rel=1e-5)

    pred = tmp_path / "pred.csv"
    run(["forecast", "predict", str(out), "--output", str(pred), "--data", str(AIR), "-q"], capsys)
    p = pd.read_csv(pred)
    assert len(p) == 12 and p["timestamp"].iloc[0].startswith("1961-01-01")
    assert p["timestamp"].iloc[-1].startswith("1961-12")
    assert {"forecast", "mean", "q0.025", "q0.5", "q0.975"} <= set(p.columns)
    assert (out / "predict.png").stat().st_size > 1000


def test_backtest_transformer(tmp_path, capsys):
    out = tmp_path / "bt"
    run(["forecast", "backtest", "--out", str(out), "--data", str(AIR), "--horizon", "6", "--windows", "3",
         "--arch", "transformer", "--baselines", "naive,snaive", "--threads", "1", *QUICK], capsys)
    assert json.loads((out / "config.json").read_text())["train"]["threads"] == 1  # backtest takes --threads too
    fc = pd.read_csv(out / "backtest_forecasts.csv")
    assert len(fc) == 18 and fc["origin"].nunique() == 3
    assert (out / "backtest.png").exists()


def test_autoregressive_student_t_with_known_covariates(tmp_path, capsys):
    out = tmp_path / "elec"
    run(["forecast", "train", "--out", str(out), "--data", str(ELEC), "--horizon", "12", "--context", "48",
         "--known-covariates", "temperature,workday", "--head", "autoregressive", "--likelihood", "student_t",
         "--baselines", "snaive", *QUICK], capsys)
    import json

    report = json.loads((out / "evaluation.json").read_text())
    assert report["season"] == 48 and np.isfinite(report["metrics"]["rnnkit-lstm"]["mase"])
    # predicting past the end needs the future covariates
    code = main(["forecast", "predict", str(out), "--output", str(tmp_path / "p.csv"), "--data", str(ELEC)])
    assert code == 2 and "--future" in capsys.readouterr().err
    df = pd.read_csv(ELEC)
    fut = pd.DataFrame({"series_id": "elecdemand",
                        "timestamp": pd.date_range("2014-01-15", periods=12, freq="30min").strftime("%Y-%m-%d %H:%M"),
                        "temperature": 20.0, "workday": 1})
    fut.to_csv(tmp_path / "future.csv", index=False)
    run(["forecast", "predict", str(out), "--output", str(tmp_path / "p.csv"), "--future", str(tmp_path / "future.csv"),
         "--data", str(ELEC), "-q"], capsys)
    p = pd.read_csv(tmp_path / "p.csv")
    assert len(p) == 12 and p["forecast"].between(df["value"].min() * 0.5, df["value"].max() * 1.5).all()


def test_demo_part(tmp_path):
    from rnnkit.apps.forecast.cli import demo

    lines = demo(tmp_path / "forecast", quick=True)
    assert "sunspots" in lines[0] and (tmp_path / "forecast" / "backtest.png").exists()


def test_global_model_many_series_static_covariate_ensemble(tmp_path, capsys):
    air = pd.read_csv(AIR)
    parts = []
    for k in range(3):  # three real 4-year stretches at different levels: one global model for all
        part = air.iloc[48 * k:48 * (k + 1)].copy()
        part["series_id"] = f"air{k}"
        part["value"] = part["value"] * (k + 1)
        part["level"] = k + 1
        parts.append(part)
    path = tmp_path / "many.csv"
    pd.concat(parts).to_csv(path, index=False)
    out = tmp_path / "many"
    run(["forecast", "train", "--out", str(out), "--data", str(path), "--horizon", "6", "--static-covariates",
         "level", "--baselines", "snaive", "--set", "ensemble=2", *QUICK], capsys)
    fc = pd.read_csv(out / "evaluation_forecasts.csv")
    assert sorted(fc["series_id"].unique()) == ["air0", "air1", "air2"] and len(fc) == 18
    assert type(rnnkit.load(out)).__name__ == "ForecastEnsemble"
    # window scaling: each series' forecast is at its own level
    means = fc.groupby("series_id")["forecast"].mean()
    assert means["air0"] < means["air1"] < means["air2"]
