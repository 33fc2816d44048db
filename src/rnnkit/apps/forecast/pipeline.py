"""Train, evaluate, backtest and predict: what the CLI commands (and the tests, and the demo) call.

Splits. ``train`` holds out the last ``holdout`` steps of every series (default: one horizon) and
scores the model and the baselines there. ``backtest`` is rolling-origin: ``windows`` forecast
origins ``stride`` steps apart at the end of every series; the model is trained once on what comes
before the first origin and then forecasts every window from the data before its origin (no refit);
the baselines are refitted at every origin. Every score in a report comes from the same windows.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rnnkit.errors import UserError

from . import baselines as bl
from .data import (
    Series,
    Windows,
    check_lengths,
    fmt_time,
    future_times,
    invert_transform,
    load_series,
    make_windows,
    season_for,
)
from .metrics import aggregate, window_metrics


@dataclass
class ForecastConfig:
    """Task options (data, model, evaluation); training options are :class:`TrainConfig`'s."""

    data: str = ""
    format: str = "auto"
    id_col: str = "series_id"
    time_col: str = "timestamp"
    target: str = "value"
    freq: str | None = None
    missing: str = "interpolate"
    irregular: str = "error"
    past_covariates: str = ""
    known_covariates: str = ""
    static_covariates: str = ""
    horizon: int = 12
    context: int = 0  # 0: auto (from horizon and season, capped by the shortest series)
    season: int = 0  # 0: from the frequency
    seasonal_features: bool = True
    transform: str = "none"  # none | log
    scaling: str = "auto"  # auto | window | last | holt | none (auto: holt without a season, else window)
    arch: str = "rnn"
    cell: str = "lstm"
    hidden: int = 32
    num_layers: int = 1
    dropout: float = 0.0
    head: str = "auto"  # auto: autoregressive (DeepAR) for an RNN without covariates and horizon <= 24
    likelihood: str = "gaussian"
    backend: str = "auto"
    holdout: int = -1  # -1: one horizon
    windows: int = 3  # backtest origins
    stride: int = 0  # 0: one horizon
    max_windows: int = 20000  # training windows (a seeded subsample beyond this)
    n_samples: int = 200
    quantiles: str = "0.025,0.1,0.5,0.9,0.975"
    baselines: str = "naive,snaive,ets,theta,arima,median"
    plot_series: int = 4
    short: str = "pad"  # pad (left padding + mask) | drop: series shorter than context + horizon (+ hold-out)
    ensemble: int = 0  # members from different initialisations, trained together (0: auto, resolve_ensemble)
    min_context: int = 4  # real steps a window needs; shorter histories are forecast by the fallback
    fallback: str = "naive"
    lookbacks: str = ""  # contexts as multiples of the horizon ("1.5,2,3"): an ensemble over them
    seeds: int = 1  # members per lookback (different initialisations)
    combine: str = "median"  # the members' point forecasts -> one (median | mean)
    validation: str = "auto"  # holdout: the last horizon of the training part, not trained on | last | auto
    calibrate: bool = True  # conformal factors from the held-out validation windows (calibration.py)
    refit: str = "auto"  # after selection + calibration, train again on every window: auto | always | never
    combine_with: str = "auto"  # statistical forecasts combined with the network's point forecast (hybrid; none)
    combine_how: str = "median"  # median | mean of the network's and the combine_with point forecasts

    def validate(self) -> ForecastConfig:
        if self.horizon <= 0:
            raise UserError(f"horizon must be positive, got {self.horizon}")
        if self.context < 0 or self.context == 1:
            raise UserError(f"context must be at least 2 (or 0 for automatic), got {self.context}")
        if self.short not in ("pad", "drop", "error"):
            raise UserError(f"unknown short-series policy {self.short!r}; choose pad, drop or error")
        if self.min_context < 2:
            raise UserError(f"min_context must be at least 2, got {self.min_context}")
        if self.fallback not in bl.BASELINES or self.fallback == "median":
            raise UserError(f"unknown fallback {self.fallback!r}; choose from {', '.join(bl.BASELINES[:-1])}")
        if self.validation not in ("auto", "holdout", "last"):
            raise UserError(f"unknown validation {self.validation!r}; choose auto, holdout or last")
        if self.refit not in REFITS:
            raise UserError(f"unknown refit {self.refit!r}; choose {', '.join(REFITS)}")
        if self.combine not in ("median", "mean"):
            raise UserError(f"unknown combine {self.combine!r}; choose median or mean")
        if self.seeds < 1:
            raise UserError(f"seeds must be at least 1, got {self.seeds}")
        self.lookback_list()
        if self.transform not in ("none", "log"):
            raise UserError(f"unknown transform {self.transform!r}; choose none or log")
        if self.scaling not in ("auto", "window", "last", "holt", "none"):
            raise UserError(f"unknown scaling {self.scaling!r}; choose auto, window, last, holt or none")
        for name in ("hidden", "num_layers", "windows", "n_samples", "max_windows"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.ensemble < 0:
            raise UserError(f"ensemble must be at least 1 (or 0: auto), got {self.ensemble}")
        self.combine_list()
        if self.combine_how not in ("median", "mean"):
            raise UserError(f"unknown combine_how {self.combine_how!r}; choose median or mean")
        for b in self.baseline_list():
            if b not in bl.BASELINES:
                raise UserError(f"unknown baseline {b!r}; choose from {', '.join(bl.BASELINES)}")
        for q in self.quantile_list():
            if not 0 < q < 1:
                raise UserError(f"quantiles must lie in (0, 1), got {q}")
        from rnnkit.cells.registry import cell_names

        if self.arch == "rnn" and self.cell not in cell_names():
            raise UserError(f"unknown cell {self.cell!r}; choose one of: {', '.join(cell_names())}")
        return self

    def lookback_list(self) -> list[float]:
        try:
            out = [float(x) for x in str(self.lookbacks).split(",") if x.strip()]
        except ValueError:
            raise UserError(f"lookbacks must be numbers separated by commas, got {self.lookbacks!r}") from None
        if any(not x > 0 for x in out):
            raise UserError(f"lookbacks must be positive multiples of the horizon, got {self.lookbacks!r}")
        return out

    def combine_list(self) -> list[str]:
        """The methods combined with the network (``auto`` unresolved and ``none``: none)."""
        if str(self.combine_with).strip() in ("auto", "none"):
            return []
        names = [b.strip() for b in str(self.combine_with).split(",") if b.strip()]
        why = combine_with_problem(names)
        if why:
            raise UserError(f"combine_with: {why}")
        return names

    def baseline_list(self) -> list[str]:
        return [b.strip() for b in self.baselines.split(",") if b.strip()]

    def quantile_list(self) -> list[float]:
        try:
            return [float(q) for q in str(self.quantiles).split(",") if q.strip()]
        except ValueError:
            raise UserError(f"quantiles must be numbers separated by commas, got {self.quantiles!r}") from None


#: what ``combine_with`` may name: the statistical baselines (``median`` is itself a combination)
COMBINABLE = tuple(b for b in bl.BASELINES if b != "median")


#: ``combine_with=auto``: these, for collections of AUTO_HOLDOUT_SERIES to AUTO_COMBINE_MAX_SERIES series
#: without covariates. Measured (docs/benchmarks.md, dev collection, 3 seeds each): the hybrid beats
#: the network alone and every statistical baseline on the yearly, quarterly and monthly parts
AUTO_COMBINE = ("arima", "ets")
#: ... and not beyond: the statistical fits cost ~0.1 s per series and forecast window on one core
AUTO_COMBINE_MAX_SERIES = 2000


def resolve_combine(cfg: ForecastConfig, data: Series, season: int = 1) -> tuple[str, str]:
    """(combine_with, why): as given (``none``: ""), or for ``auto`` :data:`AUTO_COMBINE` for a
    collection of short univariate series (the statistical methods' home ground) and none otherwise (a
    single long series, covariates, more series than the fits can afford, or seasons and histories
    where ARIMA is not cheap: :func:`_arima_cheap`, the baseline row's own guard)."""
    given = str(cfg.combine_with).strip()
    if given != "auto":
        return ("" if given == "none" else given), f"combine_with={given or 'none'} (given)"
    if data.past_names or data.known_names or data.static_names:
        return "", "combine_with auto: none (covariates: the statistical methods cannot use them)"
    if len(data) < AUTO_HOLDOUT_SERIES:
        return "", f"combine_with auto: none ({len(data)} series < {AUTO_HOLDOUT_SERIES})"
    if len(data) > AUTO_COMBINE_MAX_SERIES:
        return "", (f"combine_with auto: none ({len(data)} series > {AUTO_COMBINE_MAX_SERIES}: the statistical "
                    "fits would dominate the run; --combine-with arima,ets to pay for them)")
    if not _arima_cheap(data, len(data), season):
        return "", (f"combine_with auto: none (season {season} or histories up to {int(data.lengths().max())} "
                    "steps: ARIMA is not cheap there; --combine-with arima,ets to pay for it)")
    return ",".join(AUTO_COMBINE), (f"combine_with auto: {','.join(AUTO_COMBINE)} (a collection of {len(data)} "
                                    "series without covariates)")


def combine_with_problem(names: list[str] | str) -> str | None:
    """Why ``names`` (a list, or the option's comma-separated text) is not a valid ``combine_with``."""
    if isinstance(names, str):
        if names.strip() in ("auto", "none"):
            return None
        names = [b.strip() for b in names.split(",") if b.strip()]
    for b in names:
        if b not in COMBINABLE:
            return f"unknown method {b!r}; choose from {', '.join(COMBINABLE)} (comma-separated)"
    if len(set(names)) < len(names):
        return f"a method is named twice in {','.join(names)!r}"
    return None


# ---- data ----------------------------------------------------------------------------------------
def read_data(cfg: ForecastConfig, path: str | Path | None = None) -> Series:
    data = _load(cfg, path)
    check_series(data, path or cfg.data)
    return data


def _load(cfg: ForecastConfig, path: str | Path | None = None) -> Series:
    return load_series(Path(path or cfg.data), fmt=cfg.format, id_col=cfg.id_col, time_col=cfg.time_col,
                       target=cfg.target, freq=cfg.freq, missing=cfg.missing, irregular=cfg.irregular,
                       past_covariates=cfg.past_covariates, known_covariates=cfg.known_covariates,
                       static_covariates=cfg.static_covariates)


def note(text: str) -> None:
    import sys

    sys.stderr.write(f"rnnkit: note: {text}\n")


def check_series(data: Series, path: object = "data") -> None:
    """Series nothing can be learned from are user errors (one line): a single value, or a constant."""
    for sid, v in zip(data.ids, data.values, strict=True):
        if len(v) < 2:
            raise UserError(f"{path}: series {sid!r} has {len(v)} value; a series needs at least 2 (drop it)")
        if np.all(v == v[0]):
            raise UserError(f"{path}: series {sid!r} is constant (every value {v[0]:g}); nothing to forecast "
                            "from it: drop it (its forecast is that value)")


def drop_short(cfg: ForecastConfig, data: Series, holdout: int, horizon: int | None = None) -> Series:
    """``short=drop``: without the series too short for the window (a note on stderr); else ``data``
    (short series are left-padded and masked; those shorter than ``min_context`` use the fallback)."""
    if cfg.short != "drop":
        return data
    season = cfg.season or season_for(data.freq)
    H = cfg.horizon if horizon is None else horizon
    want = cfg.context or auto_context(cfg, season)
    need = want + H + holdout
    keep = [i for i, n in enumerate(data.lengths()) if n >= need]
    if not keep:
        raise UserError(f"every series is shorter than the window ({need} steps); lower --context or --horizon")
    if len(keep) < len(data):
        note(f"dropped {len(data) - len(keep)} of {len(data)} series shorter than {need} steps (--set short=drop)")
    return data.select(keep)


def resolve_holdout(cfg: ForecastConfig, data: Series) -> tuple[Series, int]:
    """(data, holdout) for ``train``: the default hold-out (one horizon) is skipped, with a note, when
    no series could still train a window without it; series with no value before the hold-out are not
    scored (a note says how many)."""
    H, given = cfg.horizon, cfg.holdout >= 0
    holdout = cfg.holdout if given else H
    if holdout == 0:
        return data, 0
    lengths = data.lengths()
    if not (lengths - holdout >= cfg.min_context + H).any():
        if given:
            raise UserError(f"no series holds min_context {cfg.min_context} + horizon {H} + held-out {holdout} "
                            f"values (the longest has {int(lengths.max())}); lower --holdout (0: none)")
        note(f"no held-out evaluation: the longest series ({int(lengths.max())} values) cannot hold a training "
             f"window (min_context {cfg.min_context} + horizon {H}) and {H} held-out steps")
        return data, 0
    keep = [i for i, n in enumerate(lengths) if n - holdout >= 1]
    if len(keep) < len(data):
        note(f"{len(data) - len(keep)} of {len(data)} series have no value before the {holdout} held-out steps: "
             "trained on and forecast by `predict`, not scored")
        data = data.select(keep)
    return data, holdout


def auto_context(cfg: ForecastConfig, season: int) -> int:
    """The default context: two horizons, three seasons, at least 8 steps."""
    return max(2 * cfg.horizon, 3 * season if season > 1 else 0, 8)


def resolve_shapes(cfg: ForecastConfig, data: Series, holdout: int) -> tuple[int, int]:
    """(context, season) for ``data`` (auto values filled in). Series shorter than the context are
    left-padded; the automatic context is capped by what the longest series can train on."""
    season = cfg.season or season_for(data.freq)
    if cfg.transform == "log" and any(np.any(v <= 0) for v in data.values):
        raise UserError("--transform log needs positive values; some series have values <= 0")
    if cfg.short == "error":  # the strict policy: every series must hold the whole window
        check_lengths(data, cfg.context or auto_context(cfg, season), cfg.horizon, holdout, cfg.data or "data")
    if cfg.context:
        return cfg.context, season
    spare = cfg.horizon * validation_windows(cfg, data) if validation_mode(cfg, data) == "holdout" else 0
    room = int(data.lengths().max()) - cfg.horizon - holdout - spare
    return max(cfg.min_context, min(auto_context(cfg, season), room)), season


def member_contexts(cfg: ForecastConfig, context: int) -> list[int]:
    """One context per ensemble member: the lookbacks (multiples of the horizon) x seeds, or ``context``
    (``ensemble`` members; ``ensemble=0``, auto, counts as 1 here: :func:`resolve_ensemble` decides)."""
    looks = cfg.lookback_list()
    base = [max(cfg.min_context, round(m * cfg.horizon)) for m in looks] if looks else [context]
    n = max(cfg.seeds, max(cfg.ensemble, 1) if not looks else 1)
    return [c for c in base for _ in range(n)]


#: ``ensemble=0`` (auto): this many members when the training set has fewer windows than
#: AUTO_ENSEMBLE_WINDOWS, else one. Measured (docs/benchmarks.md, AirPassengers, 85 windows): one
#: network's test RMSE varies 16.9-18.9 with the seed, five members' 16.0-16.8, at ~2 s per member;
#: a member's cost grows with the windows, so large training sets (collections: thousands) keep one
AUTO_ENSEMBLE_MEMBERS = 5
AUTO_ENSEMBLE_WINDOWS = 1000


def resolve_ensemble(cfg: ForecastConfig, n_windows: int) -> tuple[int, str]:
    """(members, why): ``ensemble`` as given, or for ``0`` (auto) 5 members under 1,000 training
    windows and 1 from there on; ``why`` says which rule applied (for the report)."""
    if cfg.ensemble:
        return cfg.ensemble, f"ensemble={cfg.ensemble} (given)"
    if cfg.lookback_list() or cfg.seeds > 1:
        return 1, "ensemble auto: lookbacks or seeds given (their members are the ensemble)"
    if n_windows < AUTO_ENSEMBLE_WINDOWS:
        return AUTO_ENSEMBLE_MEMBERS, (f"ensemble auto: {AUTO_ENSEMBLE_MEMBERS} members ({n_windows} training windows "
                                       f"< {AUTO_ENSEMBLE_WINDOWS})")
    return 1, f"ensemble auto: 1 member ({n_windows} training windows >= {AUTO_ENSEMBLE_WINDOWS})"


REFITS = ("auto", "always", "never")


def resolve_refit(cfg: ForecastConfig, held_out: bool) -> tuple[bool, str]:
    """(refit, why): ``auto`` refits whenever validation windows were held out. Measured
    (docs/benchmarks.md, 3 seeds each): on the dev collection's yearly part, where holding one horizon
    out of 238 short series keeps 1,138 of 2,640 windows from the model, mean MASE of the network 1.65
    -> 1.39; on electricity demand (8 of 358 days held out) MASE over 4 weeks 0.494 -> 0.471 and 80%
    coverage 0.770 -> 0.789. Cost: a second training of about the same length."""
    if not held_out:
        return False, "refit: none (no held-out validation windows: every window was trained on)"
    if cfg.refit != "auto":
        return cfg.refit == "always", f"refit={cfg.refit} (given)"
    return True, "refit auto: trained again on every window, the held-out ones included"


#: ``validation=auto`` holds a validation window out from this many series on
AUTO_HOLDOUT_SERIES = 10
#: ... and out of fewer series when every one is at least this many horizons long (it can spare them)
AUTO_HOLDOUT_HORIZONS = 100
#: held-out validation windows wanted in all, split over the series (at least one each): conformal
#: calibration from one window of one series is a sample of one day (elecdemand: 80% bands held 82-91%)
MIN_VAL_WINDOWS = 8


def validation_mode(cfg: ForecastConfig, data: Series) -> str:
    """``auto``: held-out validation windows for collections and for long series; a few short series
    keep their last horizon for training (AirPassengers: holding 1959 out cost 3-5 RMSE, 21-23
    against 18.1, seed 0)."""
    if cfg.validation != "auto":
        return cfg.validation
    return "holdout" if len(data) >= AUTO_HOLDOUT_SERIES or _long(cfg, data) else "last"


def _long(cfg: ForecastConfig, data: Series) -> bool:
    return int(data.lengths().min()) >= AUTO_HOLDOUT_HORIZONS * cfg.horizon


def validation_windows(cfg: ForecastConfig, data: Series) -> int:
    """Held-out validation windows per series (the last ones, back to back): one, or for a few long
    series as many as make :data:`MIN_VAL_WINDOWS` in all (a short series cannot spare them)."""
    return max(1, -(-MIN_VAL_WINDOWS // len(data))) if _long(cfg, data) else 1


def training_windows(cfg: ForecastConfig, data: Series, context: int, season: int, seed: int):
    """(train, val, held_out): windows with at least ``min_context`` real steps. With
    ``validation=holdout`` the last window(s) of every series long enough are the validation windows
    (:func:`validation_windows`) and no training window reaches into them (``held_out`` True); else
    val is the last window of each series (a monitor, also trained on)."""
    H = cfg.horizon
    origins, val_origins, held_out = training_origins(cfg, data, context)
    total = sum(len(o) for o in origins)
    if total > cfg.max_windows:
        rng = np.random.default_rng(seed)
        flat = np.concatenate([np.stack([np.full(len(o), s), o], 1) for s, o in enumerate(origins)])
        keep = flat[np.sort(rng.choice(len(flat), cfg.max_windows, replace=False))]
        origins = [keep[keep[:, 0] == s, 1] for s in range(len(data))]
    train = make_windows(data, context, H, origins, _season_feat(cfg, season), cfg.transform)
    if held_out:
        vo = val_origins
    else:
        vo = [np.array([len(v) - H]) if len(v) - H >= 1 else np.zeros(0, int) for v in data.values]
    val = make_windows(data, context, H, vo, _season_feat(cfg, season), cfg.transform)
    return train, val, held_out


def training_origins(cfg: ForecastConfig, data: Series, context: int):
    """(origins of the training windows per series, before any ``max_windows`` subsample; the
    validation origins per series; held_out) as :func:`training_windows` uses them."""
    H, m, k = cfg.horizon, cfg.min_context, validation_windows(cfg, data)
    # each series' last k windows, back to back, those with min_context real steps before them
    val_origins = [np.array([o for o in range(len(v) - k * H, len(v) - H + 1, H) if o >= m], dtype=int)
                   for v in data.values]
    val_o = [int(o[0]) if len(o) else -1 for o in val_origins]  # the first validation origin of each series
    held_out = validation_mode(cfg, data) == "holdout" and any(o >= 0 for o in val_o)
    ends = [o - H if o >= 0 and held_out else len(v) - H for o, v in zip(val_o, data.values, strict=True)]
    if held_out and all(e < m for e in ends):  # too short to spare a validation window: monitor only
        note("no held-out validation window (the series are too short): no model selection, no calibration")
        held_out, ends = False, [len(v) - H for v in data.values]
    # padded windows only where a series is short (under two full windows): long series keep full
    # contexts (AirPassengers: padding it cost 3-4 RMSE)
    origins = [np.arange(m if len(v) < 2 * (context + H) else context, e + 1)
               for e, v in zip(ends, data.values, strict=True)]
    if sum(len(o) for o in origins) == 0:
        raise UserError(f"no series holds a training window of min_context {m} + horizon {H} values (the longest "
                        f"has {int(data.lengths().max())}); lower --horizon or --set min_context=N")
    return origins, val_origins, held_out


def resolve_scaling(cfg: ForecastConfig, season: int) -> str:
    """``auto``: the damped-trend anchor (``holt``) for data without a season (yearly), the window's
    mean and std otherwise. Measured on the dev collection (docs/benchmarks.md): holt took yearly mean
    MASE from 2.12 to 1.65 (3 seeds) but cost AirPassengers (monthly, seasonal) 3-14 RMSE."""
    if cfg.scaling != "auto":
        return cfg.scaling
    return "holt" if season <= 1 else "window"


def resolve_head(cfg: ForecastConfig, data: Series) -> str:
    if cfg.head != "auto":
        return cfg.head
    # measured (docs/benchmarks.md): autoregressive wins on short univariate series and horizons
    # (AirPassengers h=12: RMSE 17.0-18.4 vs 20.6-28.5 over 3 seeds); direct wins with covariates and
    # long horizons (half-hourly demand h=48: 0.254 vs 0.385), where sampled paths compound errors
    ar = cfg.arch == "rnn" and not (data.past_names or data.known_names) and cfg.horizon <= 24
    return "autoregressive" if ar else "direct"


def _season_feat(cfg: ForecastConfig, season: int) -> int:
    return season if cfg.seasonal_features else 1


# ---- model ---------------------------------------------------------------------------------------
def build_model(cfg: ForecastConfig, data: Series, train: Windows, context: int):
    from .ensemble import ForecastEnsemble
    from .model import Forecaster

    flat = train.x_ctx.reshape(train.x_ctx.shape[0] * train.x_ctx.shape[1], train.x_ctx.shape[-1]).astype(np.float64)
    real = np.isfinite(train.y_ctx).reshape(-1)  # padded steps are not data
    flat = flat[real] if real.any() else flat
    mean, std = flat.mean(0), flat.std(0)
    std = np.where(std > 1e-8, std, 1.0)
    n_cov = len(data.past_names) + len(data.known_names)
    mean[n_cov:], std[n_cov:] = 0.0, 1.0  # seasonal sin/cos as they are
    smean, sstd = train.static.mean(0) if len(train.static) else [], train.static.std(0) if len(train.static) else []
    sstd = np.where(np.asarray(sstd) > 1e-8, sstd, 1.0)
    kw = dict(context=context, horizon=cfg.horizon, n_ctx_features=train.x_ctx.shape[-1],
              n_fut_features=train.x_fut.shape[-1], n_static=train.static.shape[-1], n_past=len(data.past_names),
              arch=cfg.arch, cell=cfg.cell, hidden=cfg.hidden, num_layers=cfg.num_layers, dropout=cfg.dropout,
              head=cfg.head, likelihood=cfg.likelihood, scaling=cfg.scaling, backend=cfg.backend,
              cov_mean=[float(x) for x in mean], cov_std=[float(x) for x in std],
              static_mean=[float(x) for x in np.ravel(smean)], static_std=[float(x) for x in np.ravel(sstd)],
              masked=True)
    contexts = member_contexts(cfg, context)
    if len(contexts) == 1:
        return Forecaster(**kw, calibrated=cfg.calibrate)
    combine = cfg.combine if (cfg.lookback_list() or cfg.seeds > 1) else "mean"  # --set ensemble=N: as before
    return ForecastEnsemble(len(contexts), contexts, combine, calibrated=cfg.calibrate, **kw)


def train_model(tcfg, cfg: ForecastConfig, data: Series, run_dir: Path, holdout: int):
    """Train on ``data`` without its last ``holdout`` steps; returns (model, fit metrics, resolved config).

    With held-out validation windows every member keeps its best validation epoch, and (``calibrate``)
    the conformal factors of the intervals are fitted on those windows and saved with the weights.
    With ``refit`` (:func:`resolve_refit`) a second model is then trained on every window, the held-out
    ones included, each member for the epochs selected for it, and takes over the factors."""
    from rnnkit.io.confine import recorded_path
    from rnnkit.io.saving import save_weights
    from rnnkit.training.config import as_dict
    from rnnkit.training.runner import distributed_env, fit, is_main_process, seed_everything

    from .task import ForecastTask

    context, season = resolve_shapes(cfg, data, holdout)
    contexts = member_contexts(cfg, context)
    context = max(contexts)  # windows of the longest; each member reads its own last steps
    trainable = data.cut(holdout)
    train, val, held_out = training_windows(cfg, trainable, context, season, tcfg.seed)
    members, ensemble_rule = resolve_ensemble(cfg, len(train))  # auto: 5 members on few windows
    if not cfg.lookback_list() and cfg.seeds == 1:
        cfg = dataclasses.replace(cfg, ensemble=members)
        contexts = member_contexts(cfg, context)  # the same context, so the same windows
    if len(train) < 8 * tcfg.batch_size:  # few windows: smaller batches, so an epoch is several steps
        world = max(1, distributed_env()[0])  # under torchrun: a multiple of the processes
        small = max(1, min(tcfg.batch_size, len(train) // 8 or 1))
        tcfg = dataclasses.replace(tcfg, batch_size=max(world, small // world * world))
    seed_everything(tcfg.seed)
    head, scaling = resolve_head(cfg, data), resolve_scaling(cfg, season)
    model = build_model(dataclasses.replace(cfg, head=head, scaling=scaling), data, train, context)
    task = ForecastTask(model, tcfg, train, val, select_best=held_out)
    refit, refit_rule = resolve_refit(cfg, held_out)
    combine, combine_rule = resolve_combine(cfg, data, season)
    resolved = dataclasses.replace(cfg, context=context, season=season, head=head, scaling=scaling,
                                   combine_with=combine)
    info = {"freq": data.freq, "n_series": len(data), "train_windows": len(train), "holdout": holdout,
            "val_windows": len(val), "val_held_out": held_out, "contexts": contexts,
            "members": len(contexts), "ensemble_rule": ensemble_rule, "refit_rule": refit_rule,
            "combine_rule": combine_rule}
    recorded = {**as_dict(resolved), "data": recorded_path(cfg.data, run_dir)}
    metrics = fit(task, run_dir, {"app": "forecast", "task": recorded, "data_info": info})
    metrics.update(ensemble_rule=ensemble_rule, refit_rule=refit_rule, combine_rule=combine_rule)
    model.eval()
    if held_out:
        metrics["best_epochs"] = task.best_epochs()
    if cfg.calibrate and held_out and len(val):
        import torch

        from . import calibration

        gen = torch.Generator().manual_seed(tcfg.seed)
        point, samples = model.forecast(*(torch.from_numpy(a) for a in (val.y_ctx, val.x_ctx, val.x_fut, val.static)),
                                        n_samples=cfg.n_samples, generator=gen)
        model.calib.fill_(1.0)
        model.calib.copy_(calibration.fit(point, samples, torch.from_numpy(val.y_fut)))
        metrics["calibration"] = model.calib.tolist()
    if held_out and is_main_process():  # the selected, calibrated model: what the run holds if the refit fails
        save_weights(model, run_dir / "model.safetensors")
    if refit:
        # a selection this process did not see (a resumed run that had finished training) counts as
        # the last epoch trained
        last = max(0, int(metrics.get("epochs_completed") or tcfg.max_epochs) - 1)
        epochs = [e if e >= 0 else last for e in task.best_epochs()]
        model, metrics["refit"] = refit_model(tcfg, resolved, trainable, model, epochs, recorded)
        if is_main_process():
            save_weights(model, run_dir / "model.safetensors")
    return model, metrics, resolved


#: the refit's intervals are matched in width on at most this many windows (calibration.match_widths)
MATCH_WINDOWS = 1000


def refit_model(tcfg, cfg: ForecastConfig, data: Series, selected, best_epochs: list[int], recorded: dict):
    """A model of ``selected``'s configuration trained on every window of ``data`` (the held-out
    validation windows included), member ``i`` kept at the end of epoch ``best_epochs[i]``; returns
    (model, what the refit did, for the metrics).

    The validation windows are the most recent data of every series; for short series they are a large
    share of it, and the model that forecasts should learn from them (train / select / refit, as
    statistical forecasting does). Intervals: the refit cannot be calibrated on windows it trained on,
    so its factors (calibration.match_widths) make its intervals as wide as ``selected``'s calibrated
    ones on the latest window of every series (at most :data:`MATCH_WINDOWS` of them). Copying
    ``selected``'s factors instead left them too narrow (the refit is more confident: yearly dev
    collection 80% coverage 0.55 on one seed of three)."""
    import tempfile
    import time

    import torch

    from rnnkit.training.runner import fit, seed_everything

    from .task import ForecastTask

    start = time.perf_counter()
    train, monitor, _ = training_windows(dataclasses.replace(cfg, validation="last"), data, cfg.context,
                                         cfg.season, tcfg.seed)
    epochs = [max(0, e) for e in best_epochs]
    # nothing to select: one validation pass at the end (the monitor), not one per epoch
    # no step limit: more windows make more steps per epoch, and the members must reach their epochs
    tcfg = dataclasses.replace(tcfg, max_epochs=max(epochs) + 1, early_stopping_patience=None,
                               val_every_n_epochs=max(epochs) + 1, max_steps=-1)
    seed_everything(tcfg.seed)
    model = build_model(cfg, data, train, cfg.context)
    task = ForecastTask(model, tcfg, train, monitor, keep_epochs=epochs)
    with tempfile.TemporaryDirectory(prefix="rnnkit-refit-") as scratch:  # its logs are not the run's
        fit(task, Path(scratch) / "refit", {"app": "forecast", "task": recorded, "refit": True})
    model.eval()
    done = {"train_windows": len(train), "epochs": [e + 1 for e in epochs]}
    if getattr(selected, "calibrated", False) and not bool((selected.calib == 1).all()):
        from . import calibration

        # the latest window of every series, forecast by both: the refit's intervals take the width of
        # the held-out model's calibrated ones (the refit trained on every window: none is held out)
        pick = np.random.default_rng(tcfg.seed).permutation(len(monitor))[:MATCH_WINDOWS]  # a median's worth
        inputs = [torch.from_numpy(a[pick]) for a in (monitor.y_ctx, monitor.x_ctx, monitor.x_fut, monitor.static)]
        _, target = selected.forecast(*inputs, n_samples=cfg.n_samples, generator=torch.Generator().manual_seed(0))
        _, own = model.forecast(*inputs, n_samples=cfg.n_samples, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            model.calib.copy_(calibration.match_widths(own, target))
        done["calibration"] = model.calib.tolist()
    done["seconds"] = round(time.perf_counter() - start, 2)
    return model, done


# ---- forecasting and scoring ---------------------------------------------------------------------
def too_short(cfg: ForecastConfig, w: Windows) -> np.ndarray:
    """Windows with fewer than ``min_context`` real steps: forecast by the fallback baseline."""
    return np.isfinite(w.y_ctx).sum(1) < cfg.min_context


def model_forecast(model, cfg: ForecastConfig, data: Series, origins: list[np.ndarray], seed: int = 0,
                   known_future=None, batch: int = 1024):
    """Windows at ``origins`` and the model's (point (N, H), samples (N, n, H)) on the value scale;
    windows of fewer than ``min_context`` real steps get the fallback baseline (a note names it)."""
    import torch

    w = make_windows(data, cfg.context, cfg.horizon, origins, _season_feat(cfg, cfg.season), cfg.transform,
                     known_future)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    points, samples = [], []
    for i in range(0, len(w), batch):
        sl = slice(i, i + batch)
        p, s = model.forecast(*(torch.from_numpy(a[sl]) for a in (w.y_ctx, w.x_ctx, w.x_fut, w.static)),
                              n_samples=cfg.n_samples, generator=gen)
        points.append(p.numpy())
        samples.append(s.numpy())
    point = invert_transform(np.concatenate(points).astype(np.float64), cfg.transform)
    samp = invert_transform(np.concatenate(samples).astype(np.float64), cfg.transform)
    short = too_short(cfg, w)
    w.method = np.where(short, f"fallback:{cfg.fallback}", "model")
    for i in np.flatnonzero(short):
        s, o = int(w.series[i]), int(w.origin[i])
        p, smp, _ = bl.forecast(cfg.fallback, data.values[s][:o], cfg.horizon, cfg.season, samp.shape[1])
        point[i] = p
        samp[i] = np.broadcast_to(p, samp[i].shape) if smp is None else smp.T[:samp.shape[1]]
    if short.any():
        ids = sorted({data.ids[int(s)] for s in w.series[short]})
        note(f"{len(ids)} series shorter than min_context {cfg.min_context} forecast by the fallback "
             f"{cfg.fallback!r}: {', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''}")
    if cfg.combine_list():
        point = combine_point(cfg, data, w, point, short)
    return w, point, samp


def combine_point(cfg: ForecastConfig, data: Series, w: Windows, point: np.ndarray, short: np.ndarray) -> np.ndarray:
    """``combine_with``: each window's point forecast as the median (``combine_how=mean``: the mean)
    of the network's and the named statistical methods' point forecasts, fitted on the same history
    (a hybrid in the spirit of ES-RNN and FFORMA: a combination of a learned and classical
    forecasts). The intervals stay the network's calibrated samples. Windows forecast by the
    fallback are left as they are. Keeps the parts on ``w`` (``network``, ``parts``) for the report."""
    names = cfg.combine_list()
    w.network = point.copy()
    w.parts = {n: [None] * len(w) for n in names}
    out = point.copy()
    reduce = np.median if cfg.combine_how == "median" else np.mean
    for i in np.flatnonzero(~short):
        s, o = int(w.series[i]), int(w.origin[i])
        hist = data.values[s][:o]
        stack = [point[i]]
        for n in names:
            got = bl.forecast(n, hist, cfg.horizon, cfg.season, cfg.n_samples)  # as score() fits it
            w.parts[n][i] = got
            stack.append(got[0])
        out[i] = reduce(np.stack(stack), 0)
    return out


def score(model, cfg: ForecastConfig, data: Series, origins: list[np.ndarray], label: str, seed: int = 0):
    """Forecast every window with the model and the baselines; returns (report dict, per-window rows).

    ``median`` is the median of the statistical baselines (holt, ets, theta, arima) scored here."""
    w, point, samples = model_forecast(model, cfg, data, origins, seed)
    short = too_short(cfg, w)
    H, m = cfg.horizon, cfg.season
    alone = f"{label}-alone" if w.network is not None else None  # the network without the combination
    names = [label, *([alone] if alone else []), *cfg.baseline_list()]
    rows: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    fallbacks = dict.fromkeys(names, 0)
    fallbacks[label] = int(short.sum())
    arima_ok = _arima_cheap(data, len(w), m)
    preds: dict[str, np.ndarray] = {label: point}
    if alone:
        preds[alone] = np.where(short[:, None], point, w.network)
        fallbacks[alone] = int(short.sum())
    first = 2 if alone else 1
    for n in names[first:]:
        preds[n] = np.full_like(point, np.nan)
    for i in range(len(w)):
        s, o = int(w.series[i]), int(w.origin[i])
        hist, actual = data.values[s][:o], data.values[s][o:o + H]
        rows[label].append(window_metrics(actual, point[i], hist, m, None if short[i] else samples[i].T))
        if alone:
            rows[alone].append(window_metrics(actual, preds[alone][i], hist, m, None if short[i] else samples[i].T))
        for n in names[first:]:
            if n == "median" or (n == "arima" and not arima_ok):
                continue
            cached = w.parts.get(n, [None] * len(w))[i] if w.parts else None  # already fitted to combine
            p, smp, fell = cached if cached is not None else bl.forecast(n, hist, H, m, cfg.n_samples)
            fallbacks[n] += int(fell)
            preds[n][i] = p
            rows[n].append(window_metrics(actual, p, hist, m, smp))
        if "median" in names:
            combined = [preds[n][i] for n in bl.COMBINED if n in preds and rows[n]]
            if len(combined) >= 2:
                preds["median"][i] = np.median(combined, 0)
                rows["median"].append(window_metrics(actual, preds["median"][i], hist, m))
    preds = {n: p for n, p in preds.items() if rows[n]}  # a skipped baseline has no column
    table = {n: aggregate(r) for n, r in rows.items() if r}
    for n in table:
        table[n]["windows"] = len(rows[n])
        if fallbacks[n]:
            table[n]["fallbacks"] = fallbacks[n]
    report = {"windows": len(w), "series": len(data), "horizon": H, "season": m, "metrics": table,
              "skipped": [n for n in names if not rows[n]]}
    if short.any():
        report["fallback"] = {"method": cfg.fallback, "windows": int(short.sum()), "min_context": cfg.min_context,
                              "series": sorted({data.ids[int(s)] for s in w.series[short]})}
    calib = getattr(model, "calib", None)
    if calib is not None:
        report["calibration"] = {"levels": [0.8, 0.95], "factors": calib.tolist()}
    w.method = np.where(short, f"fallback:{cfg.fallback}", label)  # named in the forecasts CSV
    return report, w, point, samples, preds


def _arima_cheap(data: Series, n_windows: int, season: int) -> bool:
    """ARIMA only where it costs seconds: few windows, short seasons, short histories."""
    longest = int(data.lengths().max())
    return season <= 24 and longest <= 2000 and (n_windows <= 200 or longest <= 150)  # short series fit fast


def evaluation_origins(data: Series, horizon: int, windows: int, stride: int) -> tuple[list[np.ndarray], int]:
    """Rolling origins at the end of every series, and the hold-out length they need."""
    holdout = (windows - 1) * stride + horizon
    starts = [len(v) - holdout + stride * np.arange(windows) for v in data.values]
    return [o[o >= 1] for o in starts], holdout  # an origin needs one value of history


def forecast_frame(cfg: ForecastConfig, data: Series, w: Windows, point, samples, preds=None):
    """A long DataFrame: series_id, origin, timestamp, step, forecast, q..., actual, baselines."""
    import pandas as pd

    qs = cfg.quantile_list()
    recs = []
    for i in range(len(w)):
        s, o = int(w.series[i]), int(w.origin[i])
        times = data.times[s]
        ft = future_times(times[:o], data.freq, cfg.horizon) if o > 0 else None
        qv = np.quantile(samples[i], qs, axis=0) if qs else np.zeros((0, cfg.horizon))
        for k in range(cfg.horizon):
            rec = {"series_id": data.ids[s], "origin": fmt_time(times[o - 1]), "timestamp": fmt_time(ft[k]),
                   "step": k + 1, "forecast": float(point[i, k]), "mean": float(samples[i, :, k].mean())}
            if w.method is not None:
                rec["method"] = str(w.method[i])
            for q, v in zip(qs, qv[:, k], strict=True):
                rec[f"q{q:g}"] = float(v)
            rec["actual"] = float(data.values[s][o + k]) if o + k < len(data.values[s]) else math.nan
            for n, p in (preds or {}).items():
                if n != "model":
                    rec[n] = float(p[i, k])
            recs.append(rec)
    return pd.DataFrame.from_records(recs)


def write_report(run_dir: Path, report: dict[str, Any], name: str, command: str | None = None) -> Path:
    from rnnkit.io.atomic import write_json_atomic, write_text_atomic

    write_json_atomic(run_dir / f"{name}.json", report)
    lines = [f"# forecast {name}", "", f"{report['series']} series, {report['windows']} windows of horizon "
             f"{report['horizon']} (season {report['season']})" + (f"; command: `{command}`" if command else ""), "",
             markdown_table(report["metrics"])]
    fb = report.get("fallback")
    if fb:
        lines += ["", f"{fb['windows']} windows with fewer than {fb['min_context']} values of history were forecast "
                      f"by the fallback `{fb['method']}` (series {', '.join(fb['series'][:10])}"
                      f"{' ...' if len(fb['series']) > 10 else ''})."]
    ens = report.get("model", {}).get("ensemble")
    if ens:
        lines += ["", f"Model: {ens['members']} member(s); {ens['rule']}."]
    for key in ("refit", "combine_rule"):
        if report.get("model", {}).get(key):
            lines += [f"{report['model'][key]}."]
    if "calibration" in report:
        f = np.asarray(report["calibration"]["factors"])
        refit = str(report.get("model", {}).get("refit", "")).startswith(("refit auto", "refit=always"))
        how = ("matched in width to the held-out model's, calibrated on held-out validation windows (conformal)"
               if refit else "calibrated on held-out validation windows (conformal)")
        lines += ["", f"Intervals {how}: 80% widths x {f[:, 0].mean():.2f}, 95% x {f[:, 1].mean():.2f} "
                      "(mean over horizon steps)."]
    return write_text_atomic(run_dir / f"{name}.md", "\n".join(lines) + "\n")


COLUMNS = ("mase", "smape", "mape", "mae", "rmse", "crps", "coverage80", "coverage95")


def markdown_table(table: dict[str, dict[str, float]]) -> str:
    head = "| model | " + " | ".join(COLUMNS) + " |\n|---|" + "---:|" * len(COLUMNS) + "\n"
    body = ""
    for name, row in table.items():
        cells = []
        for c in COLUMNS:
            v = row.get(c)
            cells.append("-" if v is None or not math.isfinite(v) else f"{v:.3f}")
        body += f"| {name} | " + " | ".join(cells) + " |\n"
    return head + body


def print_table(table: dict[str, dict[str, float]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    t.add_column("model")
    for c in COLUMNS:
        t.add_column(c, justify="right")
    for name, row in table.items():
        t.add_row(name, *("-" if row.get(c) is None or not math.isfinite(row[c]) else f"{row[c]:.3f}" for c in COLUMNS))
    Console(width=max(120, Console().width)).print(t)
