"""Every PNG rnnkit writes is readable (issue #25): each panel has a title (its own or the figure's),
both axis labels, a legend when it shows more than one labelled series, and tick labels that do not
overlap (date axes included). The test opens the axes of the figures as they are saved."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from _paths import DATA
from rnnkit.cli import main

QUIET = ["--set", "tensorboard=false", "--threads", "1", "-q"]


@pytest.fixture
def saved(monkeypatch):
    """The problems found in each figure saved while the test runs: {file name hint: [problems]}."""
    found: list[tuple[Figure, list[str]]] = []
    original = Figure.savefig

    def inspecting_savefig(fig, *args, **kwargs):
        found.append((fig, problems(fig)))
        return original(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", inspecting_savefig)
    return found


def _panels(fig: Figure):
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>" or not ax.axison:
            continue
        yield ax


def _overlapping(labels, renderer) -> list[str]:
    shown = [t for t in labels if t.get_visible() and t.get_text() and t.get_rotation() == 0]
    boxes = sorted(((t.get_window_extent(renderer), t.get_text()) for t in shown), key=lambda b: b[0].x0)
    return [f"{a[1]!r}/{b[1]!r}" for a, b in itertools.pairwise(boxes) if a[0].x1 > b[0].x0 + 1]


def problems(fig: Figure) -> list[str]:
    if not isinstance(fig.canvas, FigureCanvasAgg):  # a bare Figure (rnnkit.diagnostics): give it one
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    suptitle = fig._suptitle.get_text() if fig._suptitle is not None else ""
    out = []
    for ax in _panels(fig):
        name = ax.get_title() or suptitle or "an untitled panel"
        if not (ax.get_title() or suptitle):
            out.append("a panel without a title")
        if not ax.get_xlabel():
            out.append(f"{name}: no x label")
        if not ax.get_ylabel():
            out.append(f"{name}: no y label")
        _, labels = ax.get_legend_handles_labels()
        if len(labels) > 1 and ax.get_legend() is None:
            out.append(f"{name}: {len(labels)} labelled series but no legend")
        clash = _overlapping(ax.get_xticklabels(), renderer)
        if clash:
            out.append(f"{name}: x tick labels overlap: {', '.join(clash[:3])}")
    return out


def _assert_clean(saved, at_least: int) -> None:
    assert len(saved) >= at_least, f"expected {at_least} figures, {len(saved)} were saved"
    bad = [p for _, ps in saved for p in ps]
    assert bad == []


def test_forecast_plots_have_dated_labelled_axes(saved, tmp_path):
    run = tmp_path / "air"
    assert main(["forecast", "train", "--out", str(run), "--data", str(DATA / "forecast_airpassengers.csv"),
                 "--horizon", "12", "--epochs", "1", "--set", "n_samples=20", "--set", "baselines=naive",
                 *QUIET]) == 0
    assert main(["forecast", "predict", str(run), "--output", str(tmp_path / "pred.csv"),
                 "--data", str(DATA / "forecast_airpassengers.csv"), "-q"]) == 0
    _assert_clean(saved, at_least=3)  # the evaluation plot, the run's loss plot, the future's plot
    evaluation = next(fig for fig, _ in saved if fig._suptitle is not None and "evaluation" in fig._suptitle.get_text())
    ticks = [t.get_text() for t in evaluation.axes[0].get_xticklabels() if t.get_text()]
    assert any(t.isdigit() and len(t) == 4 for t in ticks), ticks  # years on the axis, not positions
    assert evaluation.axes[0].get_ylabel() == "value"


def test_half_hourly_dates_stay_readable(saved, tmp_path):
    run = tmp_path / "elec"
    assert main(["forecast", "train", "--out", str(run), "--data", str(DATA / "forecast_elecdemand_2weeks.csv"),
                 "--horizon", "48", "--epochs", "1", "--set", "n_samples=20", "--set", "baselines=naive",
                 "--set", "max_windows=64", *QUIET]) == 0
    _assert_clean(saved, at_least=2)


def test_diagnostics_plots_are_labelled(saved, tmp_path):
    from rnnkit.diagnostics import run_demo

    run_demo(tmp_path, quick=True, log=None)
    _assert_clean(saved, at_least=3)


def test_classify_and_translate_plots_are_labelled(saved, tmp_path):
    from rnnkit.apps.classify.plots import plot_confusion
    from rnnkit.apps.translate.plots import plot_attention

    plot_confusion(tmp_path / "c.png", np.array([[5, 1], [2, 7]]), ["walk", "run"], "test set: 12 of 15 right")
    plot_attention(tmp_path / "a.png", np.full((3, 4), 0.25), ["ich", "bin", "hier", "."], ["i", "am", "here"],
                   "attention, sentence 1")
    _assert_clean(saved, at_least=2)


def test_the_check_catches_an_unlabelled_plot():
    fig = Figure()
    ax = fig.subplots()
    ax.plot([0, 1], label="a")
    ax.plot([1, 0], label="b")
    found = problems(fig)
    assert "a panel without a title" in found and any("no x label" in p for p in found)
    assert any("no legend" in p for p in found)
    crowded = Figure(figsize=(4, 3))
    ax = crowded.subplots()
    ax.plot(range(30))
    ax.set(title="t", xlabel="x", ylabel="y")
    ax.set_xticks(range(30), [f"2014-01-{d:02d} 00:00" for d in range(1, 31)])
    assert any("x tick labels overlap" in p for p in problems(crowded))
