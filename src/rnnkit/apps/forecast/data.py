"""CSV files -> validated, regular series -> training windows.

Input is long (``series_id,timestamp,value`` plus optional covariate columns) or wide (a timestamp
column and one column per series). Every problem with the file is a :class:`UserError` that names the
file, the column or the series and says what to do.

Policies (explicit, recorded in the run's config):

- frequency: inferred per series (``pandas.infer_freq``) and required to agree, or given (``freq``);
  integer time steps (``1, 2, 3`` ...) are accepted as they are.
- irregular timestamps: ``error`` (default) or ``resample`` (mean of each period of ``freq``).
- missing values (empty cells and gaps in the grid): ``interpolate`` (default; linear inside the
  series, leading/trailing gaps are trimmed) or ``error``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rnnkit.errors import UserError

#: season length for a pandas frequency prefix (the first match wins)
_SEASONS = (("30min", 48), ("30T", 48), ("min", 60), ("h", 24), ("H", 24), ("B", 5), ("D", 7), ("W", 52),
            ("MS", 12), ("ME", 12), ("M", 12), ("QS", 4), ("QE", 4), ("Q", 4), ("Y", 1), ("A", 1))


def season_for(freq: str | None) -> int:
    """The usual season length of ``freq`` (1: none)."""
    if not freq:
        return 1
    f = freq.lstrip("0123456789")
    if freq.startswith("30") and f.lower() in ("min", "t"):
        return 48
    for prefix, m in _SEASONS:
        if f.startswith(prefix):
            return m
    return 1


@dataclass
class Series:
    """Regular series after validation. ``pos``: integer time index (periods since a fixed origin),
    the same grid for every series, used for seasonal features and alignment."""

    ids: list[str]
    values: list[np.ndarray]
    pos: list[np.ndarray]
    times: list[object]  # pandas DatetimeIndex per series, or an integer array
    past: list[np.ndarray] = field(default_factory=list)  # (T, P) per series
    known: list[np.ndarray] = field(default_factory=list)  # (T, K) per series
    static: np.ndarray | None = None  # (S, n_static)
    freq: str | None = None
    past_names: list[str] = field(default_factory=list)
    known_names: list[str] = field(default_factory=list)
    static_names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, keep: list[int]) -> Series:
        """Only the series at positions ``keep``."""
        return Series([self.ids[i] for i in keep], [self.values[i] for i in keep], [self.pos[i] for i in keep],
                      [self.times[i] for i in keep], [self.past[i] for i in keep], [self.known[i] for i in keep],
                      self.static[keep] if self.static is not None else None, self.freq, self.past_names,
                      self.known_names, self.static_names)

    def lengths(self) -> np.ndarray:
        return np.array([len(v) for v in self.values])

    def cut(self, n_last: int) -> Series:
        """Every series without its last ``n_last`` steps."""
        if n_last == 0:
            return self
        k = slice(None, -n_last)
        return Series(self.ids, [v[k] for v in self.values], [p[k] for p in self.pos], [t[k] for t in self.times],
                      [a[k] for a in self.past], [a[k] for a in self.known], self.static, self.freq,
                      self.past_names, self.known_names, self.static_names)


def _split(names: str | list[str] | None) -> list[str]:
    if names is None:
        return []
    if isinstance(names, str):
        names = names.split(",")
    return [n.strip() for n in names if n.strip()]


def read_frame(path: Path, fmt: str = "auto", id_col: str = "series_id", time_col: str = "timestamp",
               target: str = "value"):
    """The file as a long DataFrame with columns ``id, time, value`` plus any others (as read)."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path} is a directory; give a CSV file")
    try:
        df = pd.read_csv(path, dtype={id_col: str, time_col: str}, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise UserError(f"{path} is empty; expected a CSV with a header ({id_col},{time_col},{target})") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a readable CSV ({' '.join(str(exc).split())[:200]})") from None
    df.columns = [str(c).strip() for c in df.columns]
    if df.empty:
        raise UserError(f"{path} has a header but no rows")
    if fmt == "auto":
        fmt = "long" if (target in df.columns or id_col in df.columns) else "wide"
    if fmt not in ("long", "wide"):
        raise UserError(f"unknown format {fmt!r}; choose long, wide or auto")
    if fmt == "wide":
        if time_col not in df.columns:
            raise UserError(f"{path}: no column {time_col!r} (and no {target!r} column for the long format); "
                            f"columns are {', '.join(df.columns)}; name them with --time-col/--target")
        if len(df.columns) < 2:
            raise UserError(f"{path}: a wide file needs a {time_col!r} column and one column per series")
        df = df.melt(id_vars=[time_col], var_name=id_col, value_name=target)
    else:
        missing = [c for c in (time_col, target) if c not in df.columns]
        if missing:
            raise UserError(f"{path}: missing column(s) {', '.join(repr(c) for c in missing)}; columns are "
                            f"{', '.join(df.columns)} (name them with --time-col/--target/--id-col)")
        if id_col not in df.columns:
            df[id_col] = path.stem  # one series
    chosen = {id_col: "id", time_col: "time", target: "value"}
    clash = [c for c in df.columns if c in ("id", "time", "value") and c not in chosen]
    if clash:  # the names the rest of the app reads: another column under one of them would shadow it
        raise UserError(f"{path}: column {clash[0]!r} is not the --id-col/--time-col/--target column "
                        f"({id_col}, {time_col}, {target}) but has one of their internal names; rename it or "
                        "pass it as one of those options")
    df = df.rename(columns=chosen)
    df["id"] = df["id"].astype(str)
    return df, fmt


def _numeric(df, col: str, path: Path, allow_nan: bool = True):
    import pandas as pd

    values = pd.to_numeric(df[col], errors="coerce")
    bad = values.isna() & df[col].notna() & (df[col].astype(str).str.strip() != "")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise UserError(f"{path}: column {col!r} has a non-numeric value {df[col].iloc[i]!r} "
                        f"at data row {i + 1} (line {i + 2})")
    return values.astype(float)


def _parse_time(raw, path: Path):
    """(kind, parsed): ``int`` for integer steps, ``datetime`` otherwise."""
    import pandas as pd

    s = raw.astype(str).str.strip()
    if s.eq("").any() or raw.isna().any():
        i = int(np.flatnonzero((raw.isna() | s.eq("")).to_numpy())[0])
        raise UserError(f"{path}: empty timestamp at data row {i + 1} (line {i + 2})")
    if s.str.fullmatch(r"-?\d+").all() and not s.str.fullmatch(r"\d{4}").all():
        return "int", s.astype("int64")
    try:
        return "datetime", pd.to_datetime(s, format="mixed" if not s.str.fullmatch(r"\d{4}").all() else "%Y")
    except (ValueError, TypeError, OverflowError) as exc:
        raise UserError(f"{path}: cannot read timestamps ({' '.join(str(exc).split())[:160]}); "
                        "use ISO dates (2020-01-31, 2020-01, 2020-01-31 12:30) or integer steps") from None


def load_series(path: Path, *, fmt: str = "auto", id_col: str = "series_id", time_col: str = "timestamp",
                target: str = "value", freq: str | None = None, missing: str = "interpolate",
                irregular: str = "error", past_covariates=None, known_covariates=None,
                static_covariates=None) -> Series:
    """Read, validate and regularise ``path`` (see the module docstring for the policies)."""
    import pandas as pd

    if missing not in ("interpolate", "error"):
        raise UserError(f"unknown missing-value policy {missing!r}; choose interpolate or error")
    if irregular not in ("error", "resample"):
        raise UserError(f"unknown irregular-timestamp policy {irregular!r}; choose error or resample")
    path = Path(path)
    df, fmt = read_frame(path, fmt, id_col, time_col, target)
    past_n, known_n, static_n = _split(past_covariates), _split(known_covariates), _split(static_covariates)
    covs = past_n + known_n + static_n
    for c in covs:
        if c not in df.columns or c in ("id", "time", "value"):
            others = [x for x in df.columns if x not in ("id", "time", "value")]
            raise UserError(f"{path}: unknown covariate {c!r}; covariate columns are {', '.join(others) or 'none'}")
    if len(set(covs)) != len(covs):
        raise UserError("a covariate is named twice; each column is past, known or static, not two of them")
    df["value"] = _numeric(df, "value", path)
    for c in covs:
        df[c] = _numeric(df, c, path)
    kind, parsed = _parse_time(df["time"], path)
    df["time"] = parsed
    dup = df.duplicated(["id", "time"])
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise UserError(f"{path}: duplicate timestamp {df['time'].iloc[i]} for series {df['id'].iloc[i]!r} "
                        f"(data row {i + 1}); aggregate or drop duplicates first")
    df = df.sort_values(["id", "time"], kind="stable")
    groups = list(df.groupby("id", sort=False))

    # frequency
    if kind == "int":
        freq = None
    elif freq is None:
        inferred = set()
        for sid, g in groups:
            if len(g) >= 3:
                with warnings.catch_warnings():  # pandas 3 warns that a later version returns an offset
                    warnings.simplefilter("ignore")
                    f = pd.infer_freq(pd.DatetimeIndex(g["time"]))
                f = f if f is None or isinstance(f, str) else f.freqstr
                if f is None and irregular == "error":
                    raise UserError(f"{path}: series {sid!r} has irregular timestamps (no frequency could be "
                                    "inferred); give --freq (e.g. D, W-SUN, MS, h) and --irregular resample")
                if f is not None:
                    inferred.add(f)
        if not inferred:
            raise UserError(f"{path}: cannot infer the frequency (too few or irregular timestamps); give --freq")
        inferred = {_canonical_freq(f) for f in inferred}
        if len(inferred) > 1:
            raise UserError(f"{path}: series have different frequencies ({', '.join(sorted(inferred))}); "
                            "give --freq to choose one")
        freq = inferred.pop()
    if freq is not None:
        try:
            offset = pd.tseries.frequencies.to_offset(freq)
        except ValueError:
            raise UserError(f"unknown frequency {freq!r}; use a pandas alias such as D, W-SUN, MS, ME, h, 30min") \
                from None

    ids, values, poss, times, pasts, knowns, statics = [], [], [], [], [], [], []
    for sid, g in groups:
        cols = ["value", *past_n, *known_n]
        if kind == "int":
            t = g["time"].to_numpy()
            steps = np.diff(t)
            if len(t) > 1 and (steps != steps.min()).any() and irregular == "error":
                raise UserError(f"{path}: series {sid!r} has irregular integer time steps")
            full = np.arange(t[0], t[-1] + 1, int(steps.min()) if len(t) > 1 else 1)
            frame = g.set_index("time")[cols].reindex(full)
            pos = ((full - full[0]) // (full[1] - full[0] if len(full) > 1 else 1)).astype(np.int64)
            tindex = full
        else:
            s = g.set_index("time")[cols]
            grid = pd.date_range(s.index[0], s.index[-1], freq=offset)
            if irregular == "resample":
                frame = s.resample(offset).mean()
                grid = frame.index
            else:
                off = s.index.difference(grid)
                if len(off):
                    raise UserError(f"{path}: series {sid!r} has timestamp {off[0]} off the {freq} grid; fix it "
                                    "or pass --irregular resample")
                frame = s.reindex(grid)
            tindex = pd.DatetimeIndex(frame.index)
            pos = _positions(tindex, offset)
        y = frame["value"].to_numpy(dtype=float)
        obs = np.flatnonzero(np.isfinite(y))
        if len(obs) == 0:
            raise UserError(f"{path}: series {sid!r} has no values (all missing)")
        if np.isfinite(y).sum() < len(y):
            if missing == "error":
                i = int(np.flatnonzero(~np.isfinite(y))[0])
                raise UserError(f"{path}: series {sid!r} has a missing value at {tindex[i]} "
                                "(empty cell or a gap in the timestamps); pass --missing interpolate")
            keep = slice(obs[0], obs[-1] + 1)  # trim leading/trailing gaps, interpolate inside
            frame, tindex, pos, y = frame.iloc[keep], tindex[keep], pos[keep], y[keep]
            y = frame["value"].interpolate(method="linear").to_numpy(dtype=float)
        cov_p = frame[past_n].interpolate().bfill().ffill().to_numpy(dtype=float) if past_n else np.zeros((len(y), 0))
        cov_k = frame[known_n].interpolate().bfill().ffill().to_numpy(dtype=float) if known_n else np.zeros((len(y), 0))
        for name, arr in zip(past_n + known_n, np.concatenate([cov_p, cov_k], 1).T, strict=True):
            if not np.isfinite(arr).all():
                raise UserError(f"{path}: covariate {name!r} of series {sid!r} is all missing")
        st = []
        for c in static_n:
            vals = g[c].dropna().unique()
            if len(vals) != 1:
                raise UserError(f"{path}: static covariate {c!r} is not constant in series {sid!r} "
                                f"({len(vals)} distinct values); use it as a past or known covariate")
            st.append(float(vals[0]))
        ids.append(str(sid))
        values.append(y)
        poss.append(np.asarray(pos, dtype=np.int64))
        times.append(tindex)
        pasts.append(cov_p)
        knowns.append(cov_k)
        statics.append(st)
    return Series(ids, values, poss, times, pasts, knowns, np.array(statics, dtype=float).reshape(len(ids), -1),
                  freq, past_n, known_n, static_n)


_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def _canonical_freq(freq: str) -> str:
    """Quarterly aliases that name the same grid (``QS-JAN``, ``QS-APR``, ... ) as one alias: series
    that start in different quarters of the year still share a frequency."""
    base, _, month = freq.partition("-")
    if base.startswith("Q") and month in _MONTHS:
        return f"{base}-{_MONTHS[_MONTHS.index(month) % 3 + (9 if base.startswith('QE') else 0)]}"
    return freq


def _positions(index, offset) -> np.ndarray:
    """Integer period numbers on a common grid (for seasonal phase and alignment)."""
    import pandas as pd

    try:
        delta = pd.Timedelta(offset)
        return ((index - pd.Timestamp("1970-01-01")) // delta).to_numpy().astype(np.int64)
    except (ValueError, TypeError):
        name = offset.freqstr
        base = name.split("-")[0].rstrip("SE") or name
        base = {"M": "M", "Q": "Q", "Y": "Y", "A": "Y", "W": name, "B": "B"}.get(base, base)
        try:
            return index.to_period(base).asi8.astype(np.int64)
        except (ValueError, TypeError):
            return np.arange(len(index), dtype=np.int64)


def future_times(times, freq: str | None, h: int):
    """The ``h`` timestamps after the last of ``times``."""
    import pandas as pd

    if freq is None:
        t = np.asarray(times)
        step = t[1] - t[0] if len(t) > 1 else 1
        return t[-1] + step * np.arange(1, h + 1)
    return pd.date_range(times[-1], periods=h + 1, freq=freq)[1:]


def load_future(path: Path, data: Series, future_t: list, id_col: str = "series_id",
                time_col: str = "timestamp") -> list[np.ndarray]:
    """The known covariates of the steps ``future_t[s]`` after each series' end, from a long CSV."""
    import pandas as pd

    df, _ = read_frame(Path(path), "long", id_col, time_col, target=data.known_names[0])
    df = df.rename(columns={"value": data.known_names[0]})
    for c in data.known_names:
        if c not in df.columns:
            raise UserError(f"{path}: no column {c!r} (the model's known covariates: {', '.join(data.known_names)})")
        df[c] = _numeric(df, c, Path(path))
    kind, parsed = _parse_time(df["time"], Path(path))
    df["time"] = parsed
    out = []
    for s, sid in enumerate(data.ids):
        g = df[df["id"] == sid].drop_duplicates("time").set_index("time")
        want = pd.DatetimeIndex(future_t[s]) if kind == "datetime" else np.asarray(future_t[s])
        vals = g.reindex(want)[data.known_names].to_numpy(float)
        if not np.isfinite(vals).all():
            raise UserError(f"{path}: series {sid!r} lacks known covariates for some of the {len(want)} steps "
                            f"{want[0]} ... {want[-1]}")
        out.append(vals)
    return out


def fmt_time(t) -> str:
    """A timestamp as text: the date alone at midnight (``1960-01-01``), else ISO with the time."""
    if hasattr(t, "normalize"):
        return t.strftime("%Y-%m-%d") if t == t.normalize() else t.strftime("%Y-%m-%d %H:%M:%S")
    return str(t)


def time_features(pos: np.ndarray, season: int) -> np.ndarray:
    """sin/cos of the seasonal phase (``(T, 2)``; ``(T, 0)`` when there is no season)."""
    if season <= 1:
        return np.zeros((len(pos), 0))
    phase = 2 * np.pi * (pos % season) / season
    return np.stack([np.sin(phase), np.cos(phase)], 1)


@dataclass
class Windows:
    """Stacked windows: ``y_ctx (N, L)``, ``y_fut (N, H)``, ``x_ctx (N, L, Fc)``, ``x_fut (N, H, Ff)``,
    ``static (N, S)``, and which series / origin each came from."""

    y_ctx: np.ndarray
    y_fut: np.ndarray
    x_ctx: np.ndarray
    x_fut: np.ndarray
    static: np.ndarray
    series: np.ndarray
    origin: np.ndarray  # index in the series of the first forecast step
    method: np.ndarray | None = None  # who forecast each window (the model, or the named fallback)
    #: with ``combine_with``: the network's own point forecasts (N, H) and each combined method's
    #: ``(point, samples, fell_back)`` per window (None where the fallback forecast the window)
    network: np.ndarray | None = None
    parts: dict | None = None

    def __len__(self) -> int:
        return len(self.y_ctx)


def make_windows(data: Series, context: int, horizon: int, origins: list[np.ndarray], season: int,
                 transform: str = "none", known_future: list[np.ndarray] | None = None) -> Windows:
    """Windows whose first forecast step is at ``origins[s]`` (indices into series ``s``).

    Context features: past covariates, known covariates, seasonal features; future features: known
    covariates and seasonal features. ``y_fut`` past the end of a series is NaN (forecasting the
    future; ``known_future[s]`` then gives the known covariates of those steps). An origin with fewer
    than ``context`` steps before it is left-padded: ``y_ctx`` is NaN there (the model's mask) and
    the context features are 0.
    """
    yc, yf, xc, xf, st, sid, org = [], [], [], [], [], [], []
    for s, starts in enumerate(origins):
        y = apply_transform(data.values[s], transform)
        pos = data.pos[s]
        n = len(y)
        past, known = data.past[s], data.known[s]
        if known_future is not None and known_future[s] is not None:
            known = np.concatenate([known, known_future[s]], 0)
        for o in starts:
            o = int(o)
            fp = pos[o - 1] + np.arange(1, horizon + 1)  # the grid is regular: one step apart
            pad = max(0, context - o)
            ctx = slice(o - context + pad, o)
            yc.append(np.concatenate([np.full(pad, np.nan), y[ctx]]))
            fut = np.full(horizon, np.nan)
            fut[:max(0, min(horizon, n - o))] = y[o:o + horizon]
            yf.append(fut)
            if known.shape[1] and len(known) < o + horizon:
                raise UserError(f"series {data.ids[s]!r}: known covariates are needed for the {horizon} steps "
                                "after the end of the data; give them with --future FILE")
            feats = np.concatenate([past[ctx], known[ctx], time_features(pos[ctx], season)], 1)
            xc.append(np.concatenate([np.zeros((pad, feats.shape[1])), feats]) if pad else feats)
            kf = known[o:o + horizon] if known.shape[1] else np.zeros((horizon, 0))
            xf.append(np.concatenate([kf, time_features(fp, season)], 1))
            st.append(data.static[s] if data.static is not None else np.zeros(0))
            sid.append(s)
            org.append(o)
    f32 = np.float32
    return Windows(np.array(yc, f32), np.array(yf, f32), np.array(xc, f32), np.array(xf, f32),
                   np.array(st, f32).reshape(len(yc), -1), np.array(sid), np.array(org))


def apply_transform(y: np.ndarray, transform: str) -> np.ndarray:
    if transform == "log":
        return np.log(y)
    return np.asarray(y, dtype=float)


def invert_transform(y, transform: str):
    if transform == "log":
        return np.exp(y)
    return y


def check_lengths(data: Series, context: int, horizon: int, holdout: int, path: object = "data") -> None:
    """Every series must hold a context window, a horizon and the held-out part."""
    need = context + horizon + holdout
    for sid, n in zip(data.ids, data.lengths(), strict=True):
        if n < need:
            raise UserError(f"{path}: series {sid!r} has {n} values, shorter than the window: context {context} + "
                            f"horizon {horizon}" + (f" + held-out {holdout}" if holdout else "") +
                            f" = {need}; lower --context or --horizon, or drop the series")
