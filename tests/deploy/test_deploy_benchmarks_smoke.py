"""The deploy benchmarks stay runnable: ``benchmarks/compile.py``, ``benchmarks/onnxruntime_vs_eager.py``
and ``benchmarks/bf16.py`` at a tiny shape (no timing asserted; the compiled and exported models must
equal eager)."""

from __future__ import annotations

import importlib.util
import math
import sys

import pytest

from _paths import ROOT

BENCHMARKS = ROOT / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"rnnkit_bench_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name, None)
    return module


@pytest.mark.slow  # Inductor compiles the model and runs torch._dynamo.explain: ~15 s
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_compile_benchmark_rows(capsys):
    rows = _load("compile").main(["--models", "lstm2", "--modes", "infer", "--shapes", "4x2x3x5",
                                  "--rounds", "1", "--inner", "1", "--threads", "1"])
    (row,) = rows
    assert row["graph_breaks"] == 0 and row["max_abs_diff"] < 1e-5
    assert all(math.isfinite(row[k]) and row[k] > 0 for k in ("eager_ms", "compiled_ms", "ratio"))
    assert "| lstm2 | infer | 4 | 2 | 3 | 5 |" in capsys.readouterr().out


def test_onnxruntime_benchmark_rows(capsys):
    pytest.importorskip("onnxruntime")
    _load("onnxruntime_vs_eager").main(["--rounds", "1", "--shapes", "4x2x3x5"])
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]  # not the plan
    assert [line.split()[0] for line in lines[1:]] == ["sequence", "step"]


def test_bf16_benchmark_rows_and_training(capsys):
    bench = _load("bf16")
    bench.main(["--shapes", "4x2x3x5", "--reps", "1", "--cells", "lstm", "gru"])
    printed = capsys.readouterr().out.splitlines()
    assert printed[1].startswith("# plan: about ")  # the expected duration, before the first timing
    rows = [line.split() for line in printed[3:]]
    assert [(r[0], r[2]) for r in rows] == [(c, m) for c in ("lstm", "gru") for m in ("fwdbwd", "fwd")]
    assert all(float(r[5]) > 0 for r in rows)  # fp32 / bf16
    fp32, bf16 = bench.train(0, 3, False, hidden=8), bench.train(0, 3, True, hidden=8)
    assert len(fp32) == len(bf16) == 3 and fp32[-1] < fp32[0] and bf16[-1] < bf16[0]
    assert abs(fp32[0] - bf16[0]) < 0.05 * fp32[0]  # the same model, rounded to bf16
