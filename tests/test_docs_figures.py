"""Published figures reproduce (issue #25): ``benchmarks/docs_figures.py``.

Default suite: every figure's table in docs/ is exactly what its ``docs/figures/NAME.json`` renders
(nobody edited a number by hand, nobody re-measured without publishing), and the comparison that
``--check`` makes catches what it should. ``-m slow``: every figure is re-run for all its seeds and
must reproduce (fresh mean within the published mean ± spread, goals and claims on every seed).
"""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "docs_figures.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rnnkit_docs_figures", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


figures = _load()
NAMES = sorted(figures.FIGURES)


@pytest.mark.parametrize("name", NAMES)
def test_published_table_is_what_its_record_renders(name):
    fig = figures.FIGURES[name]
    record = figures.published(fig)  # docs/figures/NAME.json must exist: every figure is published
    assert sorted(record["seeds"], key=int) == [str(s) for s in fig.seeds]
    text = (figures.ROOT / fig.doc).read_text()
    span = figures.block_span(text, name)
    assert span is not None, f"{fig.doc} lacks the block of figure {name}"
    assert text[span[0]:span[1]] == figures.render(fig, record), (
        f"{fig.doc}: the table of figure {name} differs from docs/figures/{name}.json; "
        f"re-publish with `benchmarks/docs_figures.py --run {name}`")


@pytest.mark.parametrize("name", NAMES)
def test_published_record_meets_its_goals_and_claims(name):
    fig = figures.FIGURES[name]
    record = figures.published(fig)
    assert figures.compare(fig, record, record) == []


def _record(values: dict[int, float], key: str = "rmse") -> dict:
    return {"seeds": {str(s): {key: v} for s, v in values.items()}}


def test_compare_allows_the_spread_and_flags_what_lies_outside():
    fig = figures.Figure("t", "docs/x.md", "t", "cmd", (0, 1, 2),
                         (figures.Metric("rmse", "RMSE", goal=("<=", 18.6), tolerance=0.1),),
                         measure=lambda s, w: {})
    old = _record({0: 16.0, 1: 17.0, 2: 18.0})  # mean 17, spread 2
    assert figures.compare(fig, old, _record({0: 18.0, 1: 18.5, 2: 18.5})) == []  # mean 18.33: inside
    far = figures.compare(fig, old, _record({0: 13.0, 1: 14.0, 2: 14.5}))  # mean 13.83: outside 17 ± 2
    assert len(far) == 1 and "outside the published 17.00 ± 2.00" in far[0]
    goal = figures.compare(fig, old, _record({0: 16.0, 1: 18.9, 2: 16.5}))
    assert goal == ["RMSE goal <= 18.6 missed by seed 1: 18.90"]
    exact = _record({0: 17.0, 1: 17.0, 2: 17.0})  # no spread: the tolerance is the floor
    assert figures.compare(fig, exact, _record({0: 17.05, 1: 17.05, 2: 17.05})) == []
    assert figures.compare(fig, exact, _record({0: 17.2, 1: 17.2, 2: 17.2}))


def test_demo_claims_name_the_cell_that_broke_them():
    good = {"E_mse": 0.17, "L_mse": 0.001, "C_mse": 0.0001, "G_mse": 0.0002}
    assert figures._demo_claims(good) == []
    bad = dict(good, L_mse=0.16, E_mse=0.01)
    broken = figures._demo_claims(bad)
    assert len(broken) == 2 and broken[0].startswith("L did not beat") and "Elman beat" in broken[1]


def test_render_then_publish_replaces_only_the_block(tmp_path, monkeypatch):
    doc = tmp_path / "doc.md"
    doc.write_text("before\n<!-- figure t: old -->\nold table\n<!-- end figure t -->\nafter\n")
    fig = figures.Figure("t", "doc.md", "A title", "cmd --x 1 --seed {seed}", (0, 1),
                         (figures.Metric("rmse", "RMSE"),), measure=lambda s, w: {"rmse": 1.0 + s})
    monkeypatch.setattr(figures, "ROOT", tmp_path)
    monkeypatch.setattr(figures, "FIGURES_DIR", tmp_path / "figures")
    record = copy.deepcopy(figures.measure(fig, log=lambda *_: None))
    figures.publish(fig, record)
    text = doc.read_text()
    assert text.startswith("before\n<!-- figure t: generated") and text.endswith("<!-- end figure t -->\nafter\n")
    assert "| 0 | 1.00 |" in text and "| 1 | 2.00 |" in text and "| mean ± spread | 1.50 ± 1.00 |" in text
    assert "cmd --x 1 [--seed S]" in text and figures.published(fig)["seeds"]["1"] == {"rmse": 2.0}


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_published_figure_reproduces(name):
    assert figures.main(["--check", name]) == 0
