"""The forecasting Python API (issue #25): ``ForecastModel`` behaves as ``rnnkit forecast`` with the same
defaults, so the same model trained through the CLI and through Python gives the same forecast."""


import numpy as np
import pandas as pd
import pytest

from _paths import DATA
from rnnkit.apps.forecast import ForecastModel
from rnnkit.cli import main
from rnnkit.errors import UserError

AIR = DATA / "forecast_airpassengers.csv"
#: small and short, identical on both sides; everything else is the app's default
OPTIONS = {"horizon": 6, "max_epochs": 2, "hidden": 8, "n_samples": 50, "seed": 1}
FLAGS = ["--horizon", "6", "--epochs", "2", "--hidden", "8", "--set", "n_samples=50", "--seed", "1", "-q"]


def _cli(args):
    assert main(args) == 0


def test_cli_and_python_give_the_same_forecast(tmp_path):
    _cli(["forecast", "train", "--out", str(tmp_path / "cli"), "--data", str(AIR), *FLAGS])
    _cli(["forecast", "predict", str(tmp_path / "cli"), "--output", str(tmp_path / "cli.csv"), "--data", str(AIR),
          "-q"])
    from_cli = pd.read_csv(tmp_path / "cli.csv")

    model = ForecastModel(**OPTIONS).fit(pd.read_csv(AIR), tmp_path / "py")
    from_python = model.predict()
    assert list(from_python.columns) == list(from_cli.columns)
    assert from_python["timestamp"].tolist() == from_cli["timestamp"].tolist()
    for column in ("forecast", "mean", "q0.1", "q0.9"):
        np.testing.assert_allclose(from_python[column], from_cli[column], rtol=1e-9, err_msg=column)

    report = model.evaluate()
    assert set(report["metrics"]) >= {"rnnkit-lstm", "naive", "snaive"}
    assert report["horizon"] == 6

    copy = model.save(tmp_path / "saved")
    again = ForecastModel.load(copy).predict()
    np.testing.assert_allclose(again["forecast"], from_python["forecast"], rtol=0)


def test_series_and_arrays_are_series_over_their_index(tmp_path):
    path_fitted = ForecastModel(horizon=4, max_epochs=1, hidden=8).fit(AIR, tmp_path / "path")
    assert len(path_fitted.predict()) == 4  # the file it was fitted on (outside its run directory) is remembered
    t = np.arange(90)
    s = pd.Series(2 + np.sin(t / 3) + 0.1 * np.cos(t), name="wave")
    forecasts = ForecastModel(horizon=4, max_epochs=1, hidden=8).fit(s, tmp_path / "s").predict()
    assert forecasts["series_id"].unique().tolist() == ["wave"] and forecasts["step"].tolist() == [1, 2, 3, 4]
    assert forecasts["timestamp"].astype(int).tolist() == [90, 91, 92, 93]
    two = np.stack([2 + np.sin(t / 3), 3 + np.cos(t / 5)], axis=1)
    forecasts = ForecastModel(horizon=3, max_epochs=1, hidden=8).fit(two, tmp_path / "a").predict()
    assert sorted(forecasts["series_id"].unique()) == ["series_0", "series_1"] and len(forecasts) == 6


def test_mistakes_are_one_line_user_errors(tmp_path):
    with pytest.raises(UserError, match="not trained"):
        ForecastModel().predict()
    with pytest.raises(UserError, match="hiden"):  # unknown option, named
        ForecastModel(hiden=8).fit(pd.read_csv(AIR), tmp_path / "typo")
    with pytest.raises(UserError, match="1-D or 2-D"):
        ForecastModel().fit(np.zeros((3, 3, 3)), tmp_path / "cube")
    with pytest.raises(UserError, match=r"no config\.json"):
        ForecastModel.load(tmp_path)
