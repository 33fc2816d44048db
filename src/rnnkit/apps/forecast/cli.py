"""``rnnkit forecast``: train, evaluate, predict and backtest recurrent forecasters on CSV series.

Heavy imports (pandas, statsmodels, Lightning) happen inside the commands.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from rnnkit.cli_options import ConfigFile, Quiet, SetOptions, training_flags
from rnnkit.errors import UserError
from rnnkit.training.cli_support import command_flags

app = typer.Typer(help="Time-series forecasting: recurrent (or Transformer) global models vs naive, seasonal "
                       "naive, ETS and ARIMA baselines, with backtests, CSV forecasts and plots.",
                  no_args_is_help=True)

DATA, MODEL, TRAIN = "Data", "Model", "Training"
#: the automatic options whose resolution (``<name>_rule`` in the metrics and data_info) the report names
RULES = ("ensemble", "refit", "combine")
EXAMPLES = ("sunspots", "co2")
#: training defaults for forecasting (TrainConfig's are for the generic backbone)
TRAIN_DEFAULTS = {"max_epochs": 40, "batch_size": 64, "lr": 3e-3, "clip_norm": 1.0, "tensorboard": False,
                  "threads": 1}


def example_csv(name: str, out_dir: Path) -> Path:
    """Write a series shipped with statsmodels as a long CSV (the default example; no extra files)."""
    import pandas as pd
    import statsmodels.api as sm

    from rnnkit.io.atomic import write_text_atomic

    if name == "sunspots":
        df = sm.datasets.sunspots.load_pandas().data
        frame = pd.DataFrame({"series_id": "sunspots", "timestamp": df["YEAR"].astype(int).astype(str),
                              "value": df["SUNACTIVITY"]})
    elif name == "co2":
        df = sm.datasets.co2.load_pandas().data
        frame = pd.DataFrame({"series_id": "co2", "timestamp": df.index.strftime("%Y-%m-%d"), "value": df["co2"]})
    else:
        raise UserError(f"unknown example {name!r}; choose one of: {', '.join(EXAMPLES)}")
    path = Path(out_dir) / f"{name}.csv"
    write_text_atomic(path, frame.to_csv(index=False))
    return path


Data = Annotated[Path | None, typer.Option(help="CSV: long (series_id,timestamp,value[,covariates]) or wide "
                                                "(timestamp + one column per series)", rich_help_panel=DATA)]
Example = Annotated[str | None, typer.Option(help="use a series shipped with statsmodels instead of --data: "
                                                  "sunspots (default) | co2", rich_help_panel=DATA)]

Ensemble = Annotated[int | None, typer.Option(
    help="networks from different seeds whose forecasts are combined (0, default: auto = 5 when the data give "
         "fewer than 1000 training windows, else 1; the report says which)", rich_help_panel=MODEL)]
CombineWith = Annotated[str | None, typer.Option(
    help="hybrid point forecast: the median of the network's and these statistical forecasts, e.g. arima,ets, "
         "or none (intervals stay the network's; default auto: arima,ets for 10-2000 series without covariates)",
    rich_help_panel=MODEL)]


def _flags(**kw) -> dict[str, object]:
    return command_flags(kw, {"past": "past_covariates", "known": "known_covariates",
                              "static": "static_covariates", "fmt": "format"})


def _setup(out: Path, data: Path | None, example: str | None, config: Path | None, flags: dict):
    from rnnkit.training.cli_support import resolve_run
    from rnnkit.training.runner import refuse_existing_run

    from .options import ForecastConfig  # the class with its option ranges declared (rnnkit.validation)

    if data is not None and example is not None:
        raise UserError("give --data FILE or --example NAME, not both")
    refuse_existing_run(out, resumable=False)
    if data is None and not (config and "data" in _config_keys(config)):
        example = example or "sunspots"
    if data is not None:
        flags["data"] = str(data)
    if example is not None:
        flags["data"] = str(example_csv(example, out / "data"))
        if example == "sunspots":  # yearly: ten years ahead, the 11-year solar cycle as the season
            flags["horizon"] = 10 if flags.get("horizon") is None else flags["horizon"]
            flags["season"] = 11 if flags.get("season") is None else flags["season"]
    given = _config_keys(config) if config else set()
    for key, value in TRAIN_DEFAULTS.items():  # the app's defaults, below the config file and the flags
        if flags.get(key) is None and key not in given:
            flags[key] = value
    tcfg, fcfg = resolve_run(ForecastConfig, flags, config)
    if not fcfg.data:
        raise UserError("no data: give --data FILE (or --example sunspots)")
    from rnnkit.io.size_limits import check_size

    check_size(fcfg.hidden, fcfg.num_layers, input_size=8, seq_len=max(fcfg.context, 0), batch=tcfg.batch_size)
    return tcfg.validate(), fcfg.validate()


def _config_keys(path: Path) -> set[str]:
    from rnnkit.training.config import read_config_file

    return set(read_config_file(path))


def _command() -> str:
    return "rnnkit " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else ""


@app.command()
@training_flags(TRAIN_DEFAULTS)
def train(
    out: Annotated[Path, typer.Option(help="run directory to create")],
    data: Data = None,
    example: Example = None,
    config: ConfigFile = None,
    fmt: Annotated[str | None, typer.Option("--format", help="auto | long | wide", rich_help_panel=DATA)] = None,
    id_col: Annotated[str | None, typer.Option(rich_help_panel=DATA)] = None,
    time_col: Annotated[str | None, typer.Option(rich_help_panel=DATA)] = None,
    target: Annotated[str | None, typer.Option(rich_help_panel=DATA)] = None,
    freq: Annotated[str | None, typer.Option(help="pandas frequency (default: inferred)", rich_help_panel=DATA)] = None,
    missing: Annotated[str | None, typer.Option(help="interpolate | error", rich_help_panel=DATA)] = None,
    irregular: Annotated[str | None, typer.Option(help="error | resample", rich_help_panel=DATA)] = None,
    past: Annotated[str | None, typer.Option("--past-covariates", help="columns known only up to now",
                                             rich_help_panel=DATA)] = None,
    known: Annotated[str | None, typer.Option("--known-covariates", help="columns known in the future too",
                                              rich_help_panel=DATA)] = None,
    static: Annotated[str | None, typer.Option("--static-covariates", help="columns constant per series",
                                               rich_help_panel=DATA)] = None,
    horizon: Annotated[int | None, typer.Option(help="steps to forecast", rich_help_panel=MODEL)] = None,
    context: Annotated[int | None, typer.Option(help="input window (0: auto)", rich_help_panel=MODEL)] = None,
    season: Annotated[int | None, typer.Option(help="season length (0: from the frequency)",
                                               rich_help_panel=MODEL)] = None,
    transform: Annotated[str | None, typer.Option(help="none | log", rich_help_panel=MODEL)] = None,
    scaling: Annotated[str | None, typer.Option(help="auto | window | last | holt | none [auto]",
                                                rich_help_panel=MODEL)] = None,
    arch: Annotated[str | None, typer.Option(help="rnn | transformer", rich_help_panel=MODEL)] = None,
    cell: Annotated[str | None, typer.Option(help="lstm | gru | rnn_tanh | ...", rich_help_panel=MODEL)] = None,
    hidden: Annotated[int | None, typer.Option(rich_help_panel=MODEL)] = None,
    num_layers: Annotated[int | None, typer.Option(rich_help_panel=MODEL)] = None,
    head: Annotated[str | None, typer.Option(help="auto | direct | autoregressive", rich_help_panel=MODEL)] = None,
    likelihood: Annotated[str | None, typer.Option(help="gaussian | student_t", rich_help_panel=MODEL)] = None,
    holdout: Annotated[int | None, typer.Option(help="steps held out for the report (-1: one horizon)",
                                                rich_help_panel=MODEL)] = None,
    baselines: Annotated[str | None, typer.Option(help="naive,snaive,ets,arima", rich_help_panel=MODEL)] = None,
    ensemble: Ensemble = None,
    combine_with: CombineWith = None,
    quiet: Quiet = False,
    set_: SetOptions = None,
    training: dict | None = None,
) -> None:
    """Train on every series without its last horizon, then score it there next to the baselines."""
    flags = _flags(**{k: v for k, v in locals().items() if k not in ("out", "data", "example", "config")})
    tcfg, fcfg = _setup(out, data, example, config, flags)
    run_train(tcfg, fcfg, out, command=_command())


def run_train(tcfg, fcfg, out: Path, command: str | None = None, backtest: bool = False) -> dict:
    """Train (and score the hold-out, or every backtest window); returns the report."""
    from .pipeline import drop_short, evaluation_origins, read_data, resolve_holdout, train_model

    data = read_data(fcfg)
    if backtest:
        stride = fcfg.stride or fcfg.horizon
        holdout = (fcfg.windows - 1) * stride + fcfg.horizon
        data = drop_short(fcfg, data, holdout)
        origins, holdout = evaluation_origins(data, fcfg.horizon, fcfg.windows, stride)
    else:
        data, holdout = resolve_holdout(fcfg, data)  # the default adapts to short series (a note says so)
        data = drop_short(fcfg, data, holdout)
        origins = evaluation_origins(data, fcfg.horizon, max(1, holdout // fcfg.horizon), fcfg.horizon)[0] \
            if holdout else None
        if holdout and holdout % fcfg.horizon:
            raise UserError(f"holdout {holdout} must be a multiple of the horizon {fcfg.horizon} (or 0)")
    model, metrics, resolved = train_model(tcfg, fcfg, data, out, holdout)
    if not tcfg.quiet:
        from rnnkit.training.cli_support import print_result

        print_result(out, metrics, False)
    if not origins:
        return {}
    return report_run(model, resolved, data, origins, out, "backtest" if backtest else "evaluation", command,
                      tcfg.quiet, tcfg.seed, rules_of(metrics))


def rules_of(record: dict) -> dict[str, str | None]:
    """The ``<name>_rule`` entries of a training's metrics or its config.json ``data_info``."""
    return {k: record.get(f"{k}_rule") for k in RULES}


def model_label(cfg) -> str:
    return "rnnkit-transformer" if cfg.arch == "transformer" else f"rnnkit-{cfg.cell}"


def report_run(model, cfg, data, origins, out: Path, name: str, command: str | None, quiet: bool, seed: int = 0,
               rules: dict[str, str | None] | None = None):
    """Score ``model`` on ``origins`` and write the report, the forecasts CSV and the plot. ``rules``:
    why the automatic options resolved as they did (``ensemble``, ``refit``, ``combine``), for the report."""
    from rnnkit.io.atomic import write_text_atomic

    from .model import count_parameters
    from .pipeline import forecast_frame, print_table, score, write_report
    from .plots import plot_forecasts

    rules = rules or {}
    label = model_label(cfg)
    report, w, point, samples, preds = score(model, cfg, data, origins, label, seed)
    report["model"] = {"label": label, "parameters": count_parameters(model), "head": cfg.head,
                       "likelihood": cfg.likelihood, "context": cfg.context, "transform": cfg.transform,
                       "ensemble": {"members": len(getattr(model, "contexts", [cfg.context])),
                                    "rule": rules.get("ensemble") or f"ensemble={cfg.ensemble}"}}
    if rules.get("refit"):
        report["model"]["refit"] = rules["refit"]
    if cfg.combine_list():
        report["model"]["combine_with"] = {"methods": cfg.combine_list(), "how": cfg.combine_how}
    if rules.get("combine"):
        report["model"]["combine_rule"] = rules["combine"]
    write_report(out, report, name, command)
    frame = forecast_frame(cfg, data, w, point, samples, {k: v for k, v in preds.items() if k != label})
    write_text_atomic(out / f"{name}_forecasts.csv", frame.to_csv(index=False))
    base = next(((n, preds[n]) for n in ("snaive", "ets", "naive") if n in preds), None)
    plot_forecasts(out / f"{name}.png", data, w, point, samples, f"{label} {name} (horizon {cfg.horizon})",
                   cfg.plot_series, base, value_label=cfg.target)
    if not quiet:
        print_table(report["metrics"], f"{name}: {report['series']} series, {report['windows']} windows, "
                                       f"horizon {cfg.horizon}")
        typer.echo(f"report: {out / (name + '.md')}; forecasts: {out / (name + '_forecasts.csv')}; "
                   f"plot: {out / (name + '.png')}")
    return report


def _load_run(run_dir: Path, data: Path | None):
    """(model, config, saved config.json) of a forecast run; the data file is ``data`` when given, else
    config.json's, which must lie inside the run directory (docs/security.md), checked before the model
    is read."""
    from rnnkit.io.confine import config_path

    fcfg, saved = read_forecast_config(run_dir)
    fcfg.data = str(data) if data is not None else str(config_path(run_dir, fcfg.data, "task.data", "--data FILE"))
    return _load_model(run_dir), fcfg, saved


def load_forecast_run(run_dir: Path):
    """(model in eval mode, config, saved config.json) of a forecast run, its data file not resolved."""
    fcfg, saved = read_forecast_config(run_dir)
    return _load_model(run_dir), fcfg, saved


def read_forecast_config(run_dir: Path):
    """(task config, saved config.json) of a forecast run, checked (rnnkit.validation)."""
    from rnnkit.io.saving import read_app_config
    from rnnkit.validation.run_config import check_run_config

    from .pipeline import ForecastConfig

    saved = read_app_config(run_dir, "forecast")
    check_run_config(saved, f"{run_dir}/config.json", "forecast")
    task = saved.get("task")
    try:
        fcfg = ForecastConfig(**task)
    except TypeError as exc:  # not a mapping, or keys this version does not know
        raise UserError(f"{run_dir}/config.json: 'task' does not describe a forecast run") from exc
    if not isinstance(saved.get("data_info", {}), dict):
        raise UserError(f"{run_dir}/config.json: 'data_info' must be a JSON object")
    return fcfg, saved


def _load_model(run_dir: Path):
    import rnnkit

    from . import model as _model  # noqa: F401  (registers forecast.net)

    m = rnnkit.load(run_dir)
    m.eval()
    return m


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="a run directory from `rnnkit forecast train`")],
    data: Annotated[Path | None, typer.Option(help="CSV to score (default: the training file)")] = None,
    quiet: Quiet = False,
) -> None:
    """Score a trained run on the last horizon of every series, next to the baselines."""
    evaluate_run(run_dir, data, quiet, _command())


def evaluate_run(run_dir: Path, data: Path | None = None, quiet: bool = True, command: str | None = None) -> dict:
    """The report of a trained run scored on the held-out horizons of ``data`` (default: its training
    file), written to ``run_dir`` as the ``evaluate`` command writes it."""
    from .pipeline import drop_short, evaluation_origins, read_data

    model, fcfg, saved = _load_run(run_dir, data)
    holdout = saved.get("data_info", {}).get("holdout") or fcfg.horizon
    d = drop_short(fcfg, read_data(fcfg), holdout, horizon=0)
    origins, _ = evaluation_origins(d, fcfg.horizon, max(1, holdout // fcfg.horizon), fcfg.horizon)
    return report_run(model, fcfg, d, origins, Path(run_dir), "evaluation", command, quiet,
                      rules=rules_of(saved.get("data_info", {})))


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="a run directory from `rnnkit forecast train`")],
    output: Annotated[Path, typer.Option(help="CSV of forecasts to write")],
    data: Annotated[Path | None, typer.Option(help="history CSV (default: the training file if it lies inside the "
                                                   "run directory; a run never makes rnnkit read outside it)")] = None,
    future: Annotated[Path | None, typer.Option(exists=True, dir_okay=False,  # named: must exist (issue #21)
                                                help="CSV with the known covariates of the next horizon steps "
                                                     "(series_id,timestamp,covariates...)")] = None,
    quiet: Quiet = False,
) -> None:
    """Forecast the horizon after the end of every series (point, mean and quantiles) as CSV."""
    from rnnkit.io.atomic import write_text_atomic

    frame, png = forecast_next(run_dir, data, future)
    write_text_atomic(output, frame.to_csv(index=False))
    if not quiet:
        typer.echo(f"wrote {len(frame)} rows ({frame['series_id'].nunique()} series x {frame['step'].max()} "
                   f"steps) to {output}; plot: {png}")


def forecast_next(run_dir: Path, data: Path | None = None, future: Path | None = None):
    """(forecasts, plot path): the horizon after the end of every series of a trained run, one row per
    series and step with the point forecast, the sample mean and the quantiles; the plot is
    ``run_dir/predict.png``."""
    import numpy as np
    import pandas as pd

    from .data import fmt_time, future_times, load_future
    from .pipeline import drop_short, model_forecast, read_data
    from .plots import plot_future

    model, fcfg, _ = _load_run(run_dir, data)
    d = drop_short(fcfg, read_data(fcfg), 0, horizon=0)  # short series: padded, or the named fallback
    H = fcfg.horizon
    ft = [future_times(t, d.freq, H) for t in d.times]
    known_future = None
    if d.known_names:
        if future is None:
            raise UserError(f"the model uses known covariates ({', '.join(d.known_names)}): give their values "
                            f"for the next {H} steps with --future FILE")
        known_future = load_future(future, d, ft, fcfg.id_col, fcfg.time_col)
    origins = [np.array([len(v)]) for v in d.values]
    w, point, samples = model_forecast(model, fcfg, d, origins, 0, known_future)
    qs = fcfg.quantile_list()
    recs = []
    for s in range(len(d)):
        qv = np.quantile(samples[s], qs, axis=0)
        for k in range(H):
            rec = {"series_id": d.ids[s], "timestamp": fmt_time(ft[s][k]), "step": k + 1,
                   "forecast": float(point[s, k]), "mean": float(samples[s, :, k].mean()),
                   "method": str(w.method[s])}
            rec.update({f"q{q:g}": float(v) for q, v in zip(qs, qv[:, k], strict=True)})
            recs.append(rec)
    png = plot_future(Path(run_dir) / "predict.png", d, point, samples, ft, f"forecast of the next {H} steps",
                      fcfg.plot_series, value_label=fcfg.target)
    return pd.DataFrame.from_records(recs), png


@app.command()
@training_flags(TRAIN_DEFAULTS)
def backtest(
    out: Annotated[Path, typer.Option(help="run directory to create")],
    data: Data = None,
    example: Example = None,
    config: ConfigFile = None,
    windows: Annotated[int | None, typer.Option(help="forecast origins per series")] = None,
    stride: Annotated[int | None, typer.Option(help="steps between origins (0: one horizon)")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="auto | long | wide", rich_help_panel=DATA)] = None,
    freq: Annotated[str | None, typer.Option(rich_help_panel=DATA)] = None,
    missing: Annotated[str | None, typer.Option(help="interpolate | error", rich_help_panel=DATA)] = None,
    past: Annotated[str | None, typer.Option("--past-covariates", rich_help_panel=DATA)] = None,
    known: Annotated[str | None, typer.Option("--known-covariates", rich_help_panel=DATA)] = None,
    static: Annotated[str | None, typer.Option("--static-covariates", rich_help_panel=DATA)] = None,
    horizon: Annotated[int | None, typer.Option(rich_help_panel=MODEL)] = None,
    context: Annotated[int | None, typer.Option(rich_help_panel=MODEL)] = None,
    season: Annotated[int | None, typer.Option(rich_help_panel=MODEL)] = None,
    transform: Annotated[str | None, typer.Option(help="none | log", rich_help_panel=MODEL)] = None,
    arch: Annotated[str | None, typer.Option(help="rnn | transformer", rich_help_panel=MODEL)] = None,
    cell: Annotated[str | None, typer.Option(rich_help_panel=MODEL)] = None,
    hidden: Annotated[int | None, typer.Option(rich_help_panel=MODEL)] = None,
    head: Annotated[str | None, typer.Option(help="auto | direct | autoregressive", rich_help_panel=MODEL)] = None,
    likelihood: Annotated[str | None, typer.Option(help="gaussian | student_t", rich_help_panel=MODEL)] = None,
    baselines: Annotated[str | None, typer.Option(rich_help_panel=MODEL)] = None,
    ensemble: Ensemble = None,
    combine_with: CombineWith = None,
    quiet: Quiet = False,
    set_: SetOptions = None,
    training: dict | None = None,
) -> None:
    """Rolling-origin backtest: train once before the first origin, score every window (model and baselines)."""
    flags = _flags(**{k: v for k, v in locals().items() if k not in ("out", "data", "example", "config")})
    tcfg, fcfg = _setup(out, data, example, config, flags)
    run_train(tcfg, fcfg, out, command=_command(), backtest=True)


def demo(out_dir: Path, quick: bool) -> list[str]:
    """Sunspots (shipped with statsmodels): a GRU forecaster vs the baselines on a 3-window backtest."""
    import shutil

    from rnnkit.training.config import TrainConfig

    from .pipeline import ForecastConfig

    shutil.rmtree(out_dir, ignore_errors=True)
    path = example_csv("sunspots", out_dir / "data")
    tcfg = TrainConfig(max_epochs=8 if quick else 40, batch_size=32, lr=3e-3, quiet=True, threads=1,
                       tensorboard=False, clip_norm=1.0)
    fcfg = ForecastConfig(data=str(path), horizon=10, season=11, cell="gru", windows=3,  # the 11-year cycle
                          baselines="naive,snaive,ets,arima", n_samples=100,
                          ensemble=1).validate()  # one network: the demo stays quick
    rep = run_train(tcfg, fcfg, out_dir, command=None, backtest=True)
    mt = rep["metrics"]
    rows = ", ".join(f"{n} {v['rmse']:.1f}" for n, v in mt.items())
    return [f"sunspots (statsmodels), 3-window backtest, horizon 10 years, season 11: RMSE {rows}"
            + (" (quick mode: few epochs)" if quick else ""),
            f"report {out_dir / 'backtest.md'}, forecasts {out_dir / 'backtest_forecasts.csv'}, "
            f"plot {out_dir / 'backtest.png'}"]
