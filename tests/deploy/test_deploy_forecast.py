"""ONNX export of forecasting runs (rnnkit.deploy.forecast_export, issue #19): the draws as an input
give the app's own forecasts; onnxruntime against the model at batch sizes and sample counts the trace
did not see, for the heads, scalings, covariates, ensembles and cells; ``rnnkit export`` on a trained
run, the inputs built from its CSV, and the refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from _paths import DATA
from rnnkit.apps.forecast.ensemble import ForecastEnsemble
from rnnkit.apps.forecast.model import Forecaster
from rnnkit.cli import main
from rnnkit.deploy.forecast_export import (
    ForecastGraph,
    check_forecaster,
    export_graph,
    forecast_graph,
    forecast_inputs,
    seasonal_features,
    verify,
)
from rnnkit.deploy.onnx_export import OnnxExportError, onnx_session

pytest.importorskip("onnxruntime")
AIR = DATA / "forecast_airpassengers.csv"
L, H = 10, 4


def _ensemble(**config) -> ForecastEnsemble:
    torch.manual_seed(0)
    model = ForecastEnsemble(members=2, contexts=[L, 6], calibrated=True, context=L, horizon=H, **config)
    with torch.no_grad():  # fitted factors are not 1: the calibration map is in the graph
        model.calib.copy_(torch.tensor([[1.3, 0.8]] * H))
    return model.eval()


def _app_draws(batch: int, per_member: int, members: int, seed: int, autoregressive: bool) -> torch.Tensor:
    """The standard normal draws ``forecast(generator=...)`` takes, laid out as the ``noise`` input."""
    gen = torch.Generator().manual_seed(seed)
    parts = []
    for _ in range(members):
        if autoregressive:  # one (B * n, 1) draw per horizon step
            steps = [torch.randn(batch * per_member, 1, generator=gen)[:, 0].reshape(batch, per_member)
                     for _ in range(H)]
            parts.append(torch.stack(steps, -1))
        else:
            parts.append(torch.randn(batch, per_member, H, generator=gen))
    return torch.cat(parts, 1)


@pytest.mark.parametrize("head", ["autoregressive", "direct"])
def test_noise_input_gives_the_generator_forecasts(head):
    model = _ensemble(head=head, n_ctx_features=2, n_fut_features=2, masked=True)
    g = torch.Generator().manual_seed(3)
    y = torch.randn(3, L, generator=g).cumsum(1)
    y[0, :4] = float("nan")  # a short series, left-padded
    x_ctx, x_fut, static = torch.randn(3, L, 2, generator=g), torch.randn(3, H, 2, generator=g), torch.zeros(3, 0)
    point, samples = model.forecast(y, x_ctx, x_fut, static, n_samples=10, generator=torch.Generator().manual_seed(7))
    noise = _app_draws(3, 5, 2, 7, head == "autoregressive")
    point2, samples2 = model.forecast(y, x_ctx, x_fut, static, noise=noise)
    assert torch.equal(point, point2) and torch.equal(samples, samples2)


def test_seasonal_features_are_the_apps():
    from rnnkit.apps.forecast.data import time_features

    pos = np.array([-13, -1, 0, 5, 11, 12, 1000])
    np.testing.assert_allclose(seasonal_features(torch.from_numpy(pos), 12).numpy(), time_features(pos, 12),
                               atol=1e-6)


CONFIGS = {
    # the default's shape: autoregressive ensemble, seasonal, calibrated; GRU on ONNX's operator; log scale
    "ar-ensemble-gru-log": (dict(head="autoregressive", cell="gru", n_ctx_features=2, n_fut_features=2, masked=True),
                            dict(season=12, transform="log", n_past=0, n_known=0, n_static=0)),
    # direct head, damped-Holt anchor, every kind of covariate, two LSTM layers
    "direct-holt-covariates": (dict(head="direct", scaling="holt", num_layers=2, n_ctx_features=3, n_fut_features=1,
                                    n_past=2, n_static=2, masked=True),
                               dict(season=1, transform="none", n_past=2, n_known=1, n_static=2)),
    # a cell torch has no kernel for: the reference executor's loop is traced
    "direct-mingru": (dict(head="direct", cell="mingru", n_ctx_features=2, n_fut_features=2),
                      dict(season=7, transform="none", n_past=0, n_known=0, n_static=0)),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_exported_graph_matches_the_model(name, tmp_path):
    model_config, data_config = CONFIGS[name]
    graph = ForecastGraph(_ensemble(hidden=8, **model_config), context=L, horizon=H, **data_config)
    export_graph(graph, tmp_path / "f.onnx")  # checked at (batch 3, 12 draws) against the model
    session = onnx_session(tmp_path / "f.onnx")
    assert [i.name for i in session.get_inputs()] == graph.inputs
    for batch, samples in ((1, 2), (5, 40)):  # the trace saw (2, 4)
        assert verify(graph, tmp_path / "f.onnx", batch=batch, samples=samples) < 1e-5


def test_refusals(tmp_path):
    student = ForecastEnsemble(members=2, context=L, horizon=H, likelihood="student_t")
    with pytest.raises(OnnxExportError, match="student_t"):
        check_forecaster(student)
    transformer = Forecaster(L, H, arch="transformer", hidden=8, heads=2)
    with pytest.raises(OnnxExportError, match="Transformer"):
        export_graph(ForecastGraph(transformer, context=L, horizon=H, season=1, transform="none", n_past=0,
                                   n_known=0, n_static=0), tmp_path / "t.onnx")
    assert not (tmp_path / "t.onnx").exists()
    graph = ForecastGraph(_ensemble(hidden=4, head="direct"), context=L, horizon=H, season=1, transform="none",
                          n_past=0, n_known=0, n_static=0)
    for opset in (17, 99):  # torch.onnx writes 18 and later only: refused, never another opset silently
        with pytest.raises(OnnxExportError, match="choose 18 to"):
            export_graph(graph, tmp_path / "o.onnx", opset=opset)
    assert not (tmp_path / "o.onnx").exists()


def test_cli_exports_a_trained_run(tmp_path, capsys):
    run = tmp_path / "air"
    assert main(["forecast", "train", "--out", str(run), "--data", str(AIR), "--horizon", "6", "--epochs", "1",
                 "--hidden", "8", "--set", "baselines=naive", "--set", "ensemble=2", "--set", "n_samples=40",
                 "-q"]) == 0
    capsys.readouterr()
    for flag in ("--step", "--lengths"):
        assert main(["export", str(run), flag]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and flag in err
    assert not (run / "model.onnx").exists()
    assert main(["export", str(run)]) == 0, capsys.readouterr().err
    assert "inputs y, position, noise" in capsys.readouterr().out

    ids, inputs = forecast_inputs(run, AIR, samples=40)
    graph = forecast_graph(run)
    assert ids == ["airpassengers"] and inputs["y"].shape == (1, graph.context)
    forecast, samples = onnx_session(run / "model.onnx").run(None, inputs)
    with torch.no_grad():
        want = graph(*(torch.from_numpy(inputs[n]) for n in graph.inputs))
    np.testing.assert_allclose(forecast, want[0].numpy(), rtol=1e-5)
    np.testing.assert_allclose(samples, want[1].numpy(), rtol=1e-5)
    # the app's forecast of the same window, with its own draws: equal up to Monte Carlo noise
    assert main(["forecast", "predict", str(run), "--data", str(AIR), "--output", str(tmp_path / "p.csv"), "-q"]) == 0
    import pandas as pd

    app = pd.read_csv(tmp_path / "p.csv")["forecast"].to_numpy()
    assert np.abs(forecast[0] - app).max() < 0.1 * np.abs(app).mean()

    config = json.loads((run / "config.json").read_text())
    config["task"]["combine_with"] = "naive"
    (run / "config.json").write_text(json.dumps(config))
    assert main(["export", str(run), "--out", str(tmp_path / "hybrid.onnx")]) == 2
    assert "combine_with" in capsys.readouterr().err and not (tmp_path / "hybrid.onnx").exists()
