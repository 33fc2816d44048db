"""PNG plots in the run directory: history, forecast, prediction bands, backtest windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import Series, Windows


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _time_axis(times, steps: np.ndarray):
    """The x values for integer positions ``steps`` of a series: its dates (a DatetimeIndex; steps
    past the end extrapolated by the index's frequency) or the positions themselves."""
    import pandas as pd

    if not isinstance(times, pd.DatetimeIndex) or len(times) < 2:
        return steps
    freq = times.freq or (pd.infer_freq(times) if len(times) >= 3 else None)
    step = pd.tseries.frequencies.to_offset(freq) if freq else times[-1] - times[-2]
    out = []
    for k in steps.tolist():
        if 0 <= k < len(times):
            out.append(times[k])
        else:  # before the start or past the end
            out.append(times[-1] + step * (k - len(times) + 1) if k >= len(times) else times[0] - step * -k)
    return pd.DatetimeIndex(out)


def _label_axes(ax, times, value_label: str) -> None:
    """Axis labels, and dates that stay readable at any span (month/year shown once, not per tick)."""
    import pandas as pd

    if isinstance(times, pd.DatetimeIndex):
        import matplotlib.dates as mdates

        locator = mdates.AutoDateLocator(maxticks=8)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.set_xlabel("time")
    else:
        ax.set_xlabel("time step")
    ax.set_ylabel(value_label)
    ax.grid(alpha=0.3)


def plot_forecasts(path: Path, data: Series, w: Windows, point, samples, title: str, max_series: int = 4,
                   baseline: tuple[str, np.ndarray] | None = None, history: int | None = None,
                   value_label: str = "value") -> Path | None:
    """One panel per series (the first ``max_series``): history, every window's forecast with its
    80% and 95% bands, and the actual values; x in the data's dates, y labelled ``value_label`` (the
    target column: its units are the data's)."""

    plt = _plt()
    series = list(dict.fromkeys(int(s) for s in w.series))[:max_series]
    if not series:
        return None
    fig, axes = plt.subplots(len(series), 1, figsize=(9, 2.8 * len(series)), squeeze=False)
    for ax, s in zip(axes[:, 0], series, strict=True):
        idx = np.flatnonzero(w.series == s)
        first = int(w.origin[idx].min())
        last = int(w.origin[idx].max()) + point.shape[1]
        start = max(0, first - (history or 4 * point.shape[1]))
        y, times = data.values[s], data.times[s]
        shown = np.arange(start, min(last, len(y)))
        ax.plot(_time_axis(times, shown), y[shown], color="black", lw=1, label="actual")
        for j, i in enumerate(idx):
            o = int(w.origin[i])
            steps = _time_axis(times, np.arange(o, o + point.shape[1]))
            for lo, hi, a in ((0.025, 0.975, 0.15), (0.1, 0.9, 0.3)):
                q = np.quantile(samples[i], [lo, hi], axis=0)
                ax.fill_between(steps, q[0], q[1], color="C0", alpha=a, lw=0,
                                label=(f"{round((hi - lo) * 100)}% band" if j == 0 else None))
            ax.plot(steps, point[i], color="C0", lw=1.5, label="forecast" if j == 0 else None)
            if baseline is not None:
                ax.plot(steps, baseline[1][i], color="C3", lw=1, ls="--", label=baseline[0] if j == 0 else None)
            ax.axvline(_time_axis(times, np.array([o - 1]))[0], color="gray", lw=0.5, ls=":")  # last value seen
        _label_axes(ax, times, value_label)
        ax.set_title(f"{data.ids[s]}", fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    return _save(fig, title, path)


def plot_future(path: Path, data: Series, point, samples, future_t, title: str, max_series: int = 4,
                value_label: str = "value") -> Path:
    """History and the forecast beyond the end of the data (``rnnkit forecast predict``)."""

    plt = _plt()
    n = min(max_series, len(data))
    fig, axes = plt.subplots(n, 1, figsize=(9, 2.8 * n), squeeze=False)
    for s, ax in enumerate(axes[:, 0]):
        y = data.values[s]
        h = point.shape[1]
        k = min(len(y), 6 * h)
        times = data.times[s]
        ax.plot(_time_axis(times, np.arange(len(y) - k, len(y))), y[-k:], color="black", lw=1, label="history")
        steps = _time_axis(times, np.arange(len(y), len(y) + h))
        for lo, hi, a in ((0.025, 0.975, 0.15), (0.1, 0.9, 0.3)):
            q = np.quantile(samples[s], [lo, hi], axis=0)
            ax.fill_between(steps, q[0], q[1], color="C0", alpha=a, lw=0, label=f"{round((hi - lo) * 100)}% band")
        ax.plot(steps, point[s], color="C0", lw=1.5, label="forecast")
        ax.set_title(f"{data.ids[s]}: {future_t[s][0]} ... {future_t[s][-1]}", fontsize=9)
        _label_axes(ax, times, value_label)
        ax.legend(fontsize=7, loc="upper left")
    return _save(fig, title, path)


def _save(fig, title: str, path: Path) -> Path:
    from rnnkit.io.atomic import save_figure_atomic

    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure_atomic(fig, path)
    _plt().close(fig)
    return path
