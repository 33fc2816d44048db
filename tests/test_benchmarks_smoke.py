"""Smoke tests of the speed harnesses ``benchmarks/executors.py`` (a tiny grid) and ``benchmarks/gemm.py``
(no timing asserted)."""

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
    assert "weight gradient" in capsys.readouterr().out
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
    ratios = revisions.streaming_ratios(printed)
    assert set(ratios) == {"gru", "rnn_tanh"}
    for line in printed.splitlines():
        if line.startswith("gru "):  # ours / cell = 1 / (cell / ours), the printed column
            assert ratios["gru"] == pytest.approx(1 / float(line.split()[5]))
