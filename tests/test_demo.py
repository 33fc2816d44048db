"""``python -m rnnkit.demo --quick``: runs end to end and prints every part of the report."""

import contextlib
import io
import math
import re
import time

import pytest
import torch

from rnnkit import demo
from rnnkit.executors import backend_names
from rnnkit.tasks import ADDING_BASELINE_MSE, adding_batch

CELLS = ["Elman (rnn_tanh)", "LSTM", "LSTM, chrono init", "GRU"]


@pytest.fixture(scope="module")
def quick_output():
    buf = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(buf):
        rc = demo.main(["--quick"])
    return rc, buf.getvalue(), time.perf_counter() - start


ROW = re.compile(
    r"^  (?P<cell>.+?)\s{2,}(?P<executor>\S+)\s.*?(?P<steps>\d+)\s+(?P<mse>\d+\.\d+)\s+"
    r"(?P<verdict>yes|no)\s+(?P<first>-|step \d+)\s+(?P<time>\d+\.\d)s$"
)


def _summary_rows(out: str) -> dict[str, dict[str, str]]:
    summary = out.split("\nSummary", 1)[1]
    rows = {}
    for line in summary.splitlines():
        m = ROW.match(line)
        if m:
            rows[m["cell"]] = m.groupdict()
    return rows


def test_quick_demo_prints_a_summary_row_for_every_cell(quick_output):
    rc, out, seconds = quick_output
    assert rc == 0
    # About 6 s on an idle 2-core machine; the bound is loose so that a loaded CI machine passes,
    # but catches --quick running the full-size demo (minutes).
    assert seconds < 60
    rows = _summary_rows(out)
    assert sorted(rows) == sorted(CELLS)
    threshold = demo.BEAT_FRACTION * ADDING_BASELINE_MSE
    for cell, row in rows.items():
        assert int(row["steps"]) >= 1, cell
        mse = float(row["mse"])
        assert math.isfinite(mse) and mse >= 0, cell
        assert row["verdict"] == ("yes" if mse < threshold else "no"), cell
        if row["verdict"] == "yes":
            assert row["first"] != "-", cell
        assert row["executor"] in backend_names(), cell


def test_quick_demo_prints_chart_executors_and_explanation(quick_output):
    _, out, _ = quick_output
    assert "Held-out MSE vs training step" in out
    assert re.search(r"^\s+1/6\s+\|", out, re.M), "chart has the baseline row"
    for marker in "ELCG":
        assert f"{marker} = " in out
    executors = re.findall(r"^   executor: (\S+)", out, re.M)
    assert len(executors) == len(CELLS)
    assert set(executors) <= set(backend_names())
    assert "vanishing gradients" in out


def test_options_are_parsed():
    cfg = demo.parse_args(["--seconds-per-model", "7", "--seq-len", "50", "--seed", "3"])
    assert (cfg.seconds_per_model, cfg.seq_len, cfg.seed, cfg.steps) == (7, 50, 3, None)
    assert demo.parse_args([]).steps == demo.DEFAULT_STEPS  # the full demo reproduces: a step budget
    assert demo.parse_args(["--quick"]).steps is None  # quick: one second per model
    assert demo.parse_args(["--steps", "5"]).steps == 5
    for bad in (["--seconds-per-model", "0"], ["--steps", "0"], ["--steps", "5", "--seconds-per-model", "3"]):
        with pytest.raises(SystemExit):
            demo.parse_args(bad)


def test_fixed_step_budget_is_reproducible():
    cfg = demo.parse_args(["--quick", "--steps", "3"])
    held_out = adding_batch(cfg.seq_len, 16, generator=torch.Generator().manual_seed(0))
    spec = demo.contestants(cfg)[1]
    a = demo.train_one(spec, cfg, held_out, log=lambda *_: None)
    b = demo.train_one(spec, cfg, held_out, log=lambda *_: None)
    assert a.steps == b.steps == 3
    assert a.curve == b.curve
    assert a.curve[-1][0] == 3


def test_chart_places_markers_on_log_rows():
    spec = demo.ModelSpec("X", "X", "lstm", "a test model")
    r = demo.Result(spec, "native", steps=100, curve=[(0, 0.3), (100, 0.001)])
    lines = demo.loss_chart([r], width=11)
    top = next(line for line in lines if line.strip().startswith("0.3"))
    bottom = next(line for line in lines if line.strip().startswith("0.001"))
    assert top.endswith("|X")
    assert bottom.endswith("X") and bottom.index("X") == top.index("X") + 10


def test_plateau_note_names_only_stuck_gated_cells():
    def result(label, cell, mse):
        return demo.Result(demo.ModelSpec(label, label[0], cell, ""), "native", 10, 1.0, [(10, mse)])

    elman, lstm, gru = result("Elman", "rnn_tanh", 0.17), result("LSTM", "lstm", 0.17), result(
        "GRU", "gru", 0.001
    )
    assert demo.plateau_note([elman, gru]) == ""
    note = demo.plateau_note([elman, lstm, gru])
    assert "LSTM" in note and "GRU" not in note and "Elman" not in note
