"""PNG plots of the diagnostics (matplotlib's object API with the Agg canvas: no pyplot, no GUI,
no global backend change).

- :func:`plot_gradient_flow`: a layer x time heat map of ``log10 |dL/ds_k|`` per model,
- :func:`plot_influence`: ``|dy_T/dx_t|`` against the lag, one curve per model, horizons marked,
- :func:`plot_gate_saturation`: histograms of gate values with the saturated zones shaded.

Every function takes ``{label: result}`` (or one result) and a path, and writes atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

from rnnkit.diagnostics.gates import (
    HISTOGRAM_BINS,
    SIGMOID_HIGH,
    SIGMOID_LOW,
    TANH_SATURATION,
    GateStats,
    histogram_range,
)
from rnnkit.diagnostics.gradient_flow import GradientFlow
from rnnkit.diagnostics.influence import DEFAULT_FRACTION, Influence
from rnnkit.io.atomic import save_figure_atomic

#: log10 of the smallest value drawn; exact zeros (underflow) are drawn at this floor
LOG_FLOOR = -45.0


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _as_dict(results, kind) -> dict:
    return {getattr(results, "cell", "model"): results} if isinstance(results, kind) else dict(results)


def plot_gradient_flow(flows: GradientFlow | dict[str, GradientFlow], path: str | os.PathLike) -> Path:
    """Heat map: rows are (layer, direction[, state component]), columns are boundaries k = 0..T,
    colour is ``log10 |dL/ds_k|`` (underflowed zeros at :data:`LOG_FLOOR`)."""
    import numpy as np

    flows = _as_dict(flows, GradientFlow)
    fig = _figure(10, 1.2 + 1.6 * sum(f.num_layers * f.num_directions for f in flows.values()) ** 0.8)
    axes = fig.subplots(len(flows), 1, squeeze=False)[:, 0]
    panels = []
    for label, flow in flows.items():
        rows, names = [], []
        for layer in range(flow.num_layers):
            for d in range(flow.num_directions):
                for comp, norms in flow.norms.items():
                    rows.append(norms[layer, d].numpy())
                    names.append(f"L{layer}{'r' if d else ''} {comp}")
        panels.append((label, np.log10(np.maximum(np.stack(rows), 10.0**LOG_FLOOR)), names))
    # one colour scale for every panel, so that models compare; exact zeros sit at the floor
    finite = np.concatenate([d[d > LOG_FLOOR] for _, d, _ in panels])
    vmin = float(finite.min()) if finite.size else LOG_FLOOR
    vmax = float(finite.max()) if finite.size else 0.0
    for ax, (label, data, names) in zip(axes, panels, strict=True):
        im = ax.imshow(data, aspect="auto", interpolation="nearest", cmap="viridis", vmin=vmin, vmax=vmax)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_title(f"{label}: log10 |dL/ds_k|", fontsize=9)
        ax.set_xlabel("boundary k (state after k inputs)", fontsize=8)
        ax.set_ylabel("layer, state", fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01, label="log10 |dL/ds_k|")
    fig.tight_layout()
    return save_figure_atomic(fig, path)


def plot_influence(
    influences: Influence | dict[str, Influence], path: str | os.PathLike, fraction: float = DEFAULT_FRACTION
) -> Path:
    """``|dy_T/dx_{T-1-lag}|`` normalised by its peak, on a log scale, with each memory horizon."""
    influences = _as_dict(influences, Influence)
    fig = _figure(7, 4)
    ax = fig.subplots()
    for label, inf in influences.items():
        curve = inf.by_lag.numpy()
        peak = curve.max() if curve.size and curve.max() > 0 else 1.0
        floor = 10.0**LOG_FLOOR
        (line,) = ax.semilogy(range(inf.seq_len), [max(v / peak, floor) for v in curve], label=label)
        lag, reached = inf.horizon(fraction)
        if reached:
            ax.axvline(lag, color=line.get_color(), linestyle=":", linewidth=1)
    ax.axhline(fraction, color="grey", linestyle="--", linewidth=1, label=f"{fraction:g} of peak")
    ax.set_xlabel("lag T-1-t (0 = last input)")
    ax.set_ylabel("|dy_T/dx_t| / max")
    ax.set_title("influence of inputs on the last output (dotted: memory horizon)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure_atomic(fig, path)


def plot_gate_saturation(stats: GateStats | dict[str, GateStats], path: str | os.PathLike) -> Path:
    """One row per (model, layer, direction), one column per gate: the distribution of gate values,
    saturated zones shaded red, the saturated fraction in each title."""
    stats = _as_dict(stats, GateStats)
    rows = [
        (label, layer, d, gates)
        for label, s in stats.items()
        for layer, per_dir in enumerate(s.layers)
        for d, gates in enumerate(per_dir)
    ]
    ncols = max(len(g) for *_, g in rows)
    fig = _figure(2.4 * ncols, 1.9 * len(rows))
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for r, (label, layer, d, gates) in enumerate(rows):
        for c in range(ncols):
            ax = axes[r, c]
            if c >= len(gates):
                ax.set_axis_off()
                continue
            name, s = list(gates.items())[c]
            lo, hi = histogram_range(s.kind)
            width = (hi - lo) / HISTOGRAM_BINS
            total = max(sum(s.histogram), 1)
            ax.bar([lo + (i + 0.5) * width for i in range(HISTOGRAM_BINS)],
                   [h / total for h in s.histogram], width=width, color="tab:blue")
            for a, b in _saturated_zones(s.kind):
                ax.axvspan(a, b, color="tab:red", alpha=0.15)
            ax.set_title(f"{label} L{layer}{'r' if d else ''} {name}: {100 * s.saturated:.0f}% sat.", fontsize=7)
            ax.set_xlabel("gate value", fontsize=6)
            ax.set_ylabel("share of steps", fontsize=6)
            ax.tick_params(labelsize=6)
    fig.tight_layout()
    return save_figure_atomic(fig, path)


def _saturated_zones(kind: str) -> list[tuple[float, float]]:
    if kind == "sigmoid":
        return [(0.0, SIGMOID_LOW), (SIGMOID_HIGH, 1.0)]
    if kind == "tanh":
        return [(-1.0, -TANH_SATURATION), (TANH_SATURATION, 1.0)]
    return [(0.0, 1.0 / HISTOGRAM_BINS)] if kind == "relu" else []


__all__ = ["LOG_FLOOR", "plot_gate_saturation", "plot_gradient_flow", "plot_influence"]
