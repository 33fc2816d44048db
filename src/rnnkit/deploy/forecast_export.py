"""ONNX export of a forecasting run (``rnnkit forecast train`` / ``ForecastModel.fit``).

The file computes what ``Forecaster.forecast`` computes for one window per row, on the data's own
scale: the run's log transform (if any) and seasonal features are inside the graph, so a caller feeds
the last ``context`` values of each series. The random draws of the sample paths are an input, so
the graph is deterministic: the same draws give the app's forecasts (tests check it).

Inputs (``batch`` symbolic; ``context`` L and ``horizon`` H are the run's):

- ``y`` float32 (batch, L): the last L values, oldest first; NaN for missing history on the left
  (a series shorter than the context), as the app pads it;
- ``position`` int64 (batch,): the period number of the first forecast step on the run's grid
  (runs with seasonal features only; only its value modulo the season matters);
- ``past_covariates`` (batch, L, P), ``known_covariates`` (batch, L + H, K) (the context's steps,
  then the horizon's), ``static_covariates`` (batch, S): when the run has them;
- ``noise`` float32 (batch, n, H): standard normal draws; n is a multiple of the ensemble's member
  count (each member takes n / members of them, in order).

Outputs: ``forecast`` (batch, H), the point forecast (the median of the sample paths for the
autoregressive head, the distribution's centre for the direct head; combined over members by the
run's rule), and ``samples`` (batch, n, H), the calibrated sample paths (quantiles:
``numpy.quantile(samples, q, axis=1)``).

The graph is traced by ``torch.onnx.export`` from :class:`ForecastGraph`, with the recurrent layers
on torch's own kernels where they run the cell (ONNX's ``LSTM``/``GRU``/``RNN`` operators) and on the
reference executor otherwise. Refused (:class:`OnnxExportError`): a Student-t likelihood (its draws
are not standard normal), a run that combines the network with statistical methods
(``combine_with``: not a graph), the Transformer baseline.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit.deploy.onnx_export import OnnxExportError, onnx_session
from rnnkit.deploy.traced_export import check_traced_opset, distribution_checks_off, traced_onnx
from rnnkit.io.atomic import write_bytes_atomic

#: the largest difference (relative to the forecasts' size) the written file may show against the model
TOLERANCE = 1e-4


class ForecastGraph(nn.Module):
    """A forecaster with the run's data handling around it: what the exported file computes.

    ``inputs`` names the inputs :meth:`forward` takes, in order (see the module docstring)."""

    def __init__(self, model: nn.Module, *, context: int, horizon: int, season: int, transform: str,
                 n_past: int, n_known: int, n_static: int) -> None:
        super().__init__()
        self.model = model
        self.context, self.horizon, self.season, self.transform = context, horizon, season, transform
        self.n_past, self.n_known, self.n_static = n_past, n_known, n_static
        self.inputs = ["y", *(["position"] if season > 1 else []),
                       *(["past_covariates"] if n_past else []), *(["known_covariates"] if n_known else []),
                       *(["static_covariates"] if n_static else []), "noise"]

    def forward(self, *tensors: Tensor) -> tuple[Tensor, Tensor]:
        given = dict(zip(self.inputs, tensors, strict=True))
        y, noise = given["y"], given["noise"]
        B, L, H = y.shape[0], self.context, self.horizon
        ctx_parts, fut_parts = [], []
        if self.n_past:
            ctx_parts.append(given["past_covariates"])
        if self.n_known:
            known = given["known_covariates"]
            ctx_parts.append(known[:, :L])
            fut_parts.append(known[:, L:])
        if self.season > 1:
            first = given["position"][:, None]
            ctx_parts.append(seasonal_features(first - L + torch.arange(L), self.season))
            fut_parts.append(seasonal_features(first + torch.arange(H), self.season))
        x_ctx = torch.cat(ctx_parts, -1) if ctx_parts else y.new_zeros(B, L, 0)
        x_fut = torch.cat(fut_parts, -1) if fut_parts else y.new_zeros(B, H, 0)
        static = given["static_covariates"] if self.n_static else y.new_zeros(B, 0)
        if self.transform == "log":
            y = torch.log(y)
        point, samples = self.model.forecast(y, x_ctx, x_fut, static, noise=noise)
        if self.transform == "log":
            point, samples = torch.exp(point), torch.exp(samples)
        return point, samples


def _nets(model: nn.Module) -> list[nn.Module]:
    """The forecasters of ``model``: an ensemble's members, or the model itself."""
    return list(getattr(model, "nets", [model]))


def _draws(graph: ForecastGraph, samples: int) -> int:
    """``samples`` rounded up to a multiple of the ensemble's member count (each takes an equal share)."""
    members = getattr(graph.model, "members", 1)
    return -(-samples // members) * members


def check_forecaster(model: nn.Module) -> None:
    """Raise :class:`OnnxExportError` for a forecaster the export refuses (see the module docstring)."""
    nets = _nets(model)
    if any(net.arch != "rnn" for net in nets):
        raise OnnxExportError("the Transformer baseline (arch transformer) is not exported; export an RNN run")
    if any(net.likelihood != "gaussian" for net in nets):
        raise OnnxExportError("a student_t run is not exported (its sample paths need gamma draws as well); "
                              "export a run with the gaussian likelihood")


def seasonal_features(position: Tensor, season: int) -> Tensor:
    """sin/cos of the seasonal phase of integer ``position`` (..., T) -> (..., T, 2): the app's
    ``data.time_features``, in torch."""
    phase = (2 * math.pi / season) * torch.remainder(position, season).to(torch.float32)
    return torch.stack([torch.sin(phase), torch.cos(phase)], -1)


def forecast_graph(run_dir: str | os.PathLike[str]) -> ForecastGraph:
    """The :class:`ForecastGraph` of a forecasting run directory (its model in eval mode), or
    :class:`OnnxExportError` for a run the export refuses."""
    return _run_graph(run_dir)[0]


def _run_graph(run_dir: str | os.PathLike[str]):
    """(:class:`ForecastGraph`, task config) of a forecasting run directory, read once."""
    from rnnkit.apps.forecast.cli import load_forecast_run
    from rnnkit.apps.forecast.pipeline import _season_feat

    model, cfg, _ = load_forecast_run(Path(run_dir))
    if cfg.combine_list():
        raise OnnxExportError(f"this run combines the network with {cfg.combine_with} (combine_with): statistical "
                              "fits are not a graph; export a run trained without combine_with")
    check_forecaster(model)
    net = _nets(model)[0]
    season = _season_feat(cfg, cfg.season)
    n_known = net.n_ctx - net.n_past - (2 if season > 1 else 0)
    graph = ForecastGraph(model, context=cfg.context, horizon=cfg.horizon, season=season, transform=cfg.transform,
                          n_past=net.n_past, n_known=n_known, n_static=net.n_static)
    return graph, cfg


def forecast_inputs(run_dir: str | os.PathLike[str], data: str | os.PathLike[str], *,
                    future: str | os.PathLike[str] | None = None, samples: int | None = None,
                    seed: int = 0) -> tuple[list[str], dict[str, np.ndarray]]:
    """(series ids, the exported graph's inputs) for the horizon after the end of every series of the
    CSV ``data``, read as ``rnnkit forecast predict`` reads it (``future``: the known covariates of
    the next horizon steps). ``samples`` (default: the run's ``n_samples``) standard normal draws per
    window from numpy's generator seeded with ``seed``, rounded up to a multiple of the members."""
    from rnnkit.apps.forecast.data import future_times, load_future, make_windows
    from rnnkit.apps.forecast.pipeline import drop_short, read_data

    graph, cfg = _run_graph(run_dir)
    d = drop_short(cfg, read_data(cfg, Path(data)), 0, horizon=0)
    L, H = graph.context, graph.horizon
    known_future = None
    if graph.n_known:
        if future is None:
            raise OnnxExportError(f"the model uses known covariates ({', '.join(d.known_names)}): give their "
                                  f"values for the next {H} steps (future=)")
        known_future = load_future(Path(future), d, [future_times(t, d.freq, H) for t in d.times], cfg.id_col,
                                   cfg.time_col)
    # the app's own windows after each series' end, on the data's scale and without seasonal columns
    # (the graph computes those from `position`): x_ctx = [past, known], x_fut = known
    w = make_windows(d, L, H, [np.array([len(v)]) for v in d.values], 1, "none", known_future)
    P = graph.n_past
    given = {"y": w.y_ctx, "position": np.array([p[-1] + 1 for p in d.pos], np.int64),
             "past_covariates": w.x_ctx[..., :P], "known_covariates": np.concatenate([w.x_ctx[..., P:], w.x_fut], 1),
             "static_covariates": w.static,
             "noise": np.random.default_rng(seed).standard_normal((len(d), _draws(graph, samples or cfg.n_samples), H))}
    inputs = {name: given[name] if name == "position" else given[name].astype(np.float32) for name in graph.inputs}
    return list(d.ids), inputs


def example_inputs(graph: ForecastGraph, batch: int, samples: int, seed: int = 0) -> list[Tensor]:
    """Random inputs for ``graph`` (positive values, as a log-transformed run needs), ``samples``
    rounded up to a multiple of the ensemble's member count."""
    g = torch.Generator().manual_seed(seed)
    n = _draws(graph, samples)
    L, H = graph.context, graph.horizon
    shapes = {"y": (batch, L), "past_covariates": (batch, L, graph.n_past),
              "known_covariates": (batch, L + H, graph.n_known), "static_covariates": (batch, graph.n_static),
              "noise": (batch, n, H)}
    out = []
    for name in graph.inputs:
        if name == "position":
            out.append(torch.randint(0, 10_000, (batch,), generator=g))
        elif name == "y":
            out.append(1 + torch.rand(shapes[name], generator=g))
        else:
            out.append(torch.randn(shapes[name], generator=g))
    return out


def export_forecast(run_dir: str | os.PathLike[str], path: str | os.PathLike[str], *, opset: int | None = None,
                    check: bool = True) -> ForecastGraph:
    """Write a forecasting run's model as an ONNX file at ``path`` (see the module docstring) and,
    with ``check``, compare the file in onnxruntime with the model on inputs of another batch size
    and sample count than the traced ones. Returns the :class:`ForecastGraph` it traced."""
    return export_graph(forecast_graph(run_dir), path, opset=opset, check=check)


def export_graph(graph: ForecastGraph, path: str | os.PathLike[str], *, opset: int | None = None,
                 check: bool = True) -> ForecastGraph:
    """:func:`export_forecast` for a :class:`ForecastGraph` built in Python."""
    check_forecaster(graph.model)
    _check_opset(opset)
    graph = graph.eval()
    proto = _trace(graph, opset)
    serialized = proto.SerializeToString()
    if check:  # before anything is written
        verify(graph, serialized)
    write_bytes_atomic(path, serialized)
    return graph


def _check_opset(opset: int | None) -> None:
    check_traced_opset(opset, "a forecast graph")


def _trace(graph: ForecastGraph, opset: int | None) -> Any:
    """The ONNX ``ModelProto`` of ``graph``: batch and the sample count symbolic."""
    members = getattr(graph.model, "members", 1)
    example = example_inputs(graph, 2, 2 * members)  # sizes of 1 would be specialised
    batch, per_member = torch.export.Dim("batch"), torch.export.Dim("samples_per_member", min=1, max=1 << 20)
    dims = {"y": {0: batch}, "position": {0: batch}, "past_covariates": {0: batch}, "known_covariates": {0: batch},
            "static_covariates": {0: batch}, "noise": {0: batch, 1: members * per_member}}
    shapes = (tuple(dims[n] for n in graph.inputs),)  # forward(*tensors): one argument
    with distribution_checks_off():
        return traced_onnx(graph, example, shapes, input_names=graph.inputs, output_names=["forecast", "samples"],
                           opset=opset)


def verify(graph: ForecastGraph, path: str | os.PathLike[str] | bytes, batch: int = 3, samples: int = 12) -> float:
    """Run the file in onnxruntime on random inputs and compare with ``graph``; returns the largest
    difference relative to the forecasts' size, or raises :class:`OnnxExportError` above
    :data:`TOLERANCE`."""
    inputs = example_inputs(graph, batch, samples, seed=1)
    with torch.no_grad():
        want = graph(*inputs)
    got = onnx_session(path).run(None, {n: t.numpy() for n, t in zip(graph.inputs, inputs, strict=True)})
    worst = 0.0
    for name, a, b in zip(("forecast", "samples"), got, want, strict=True):
        size = 1.0 + float(b.abs().max())
        worst = max(worst, float(np.abs(a - b.numpy()).max()) / size)
        if not worst <= TOLERANCE:
            raise OnnxExportError(f"the exported graph's {name} differs from the model by {worst:.3g} (relative)")
    return worst
