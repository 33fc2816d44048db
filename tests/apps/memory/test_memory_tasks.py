"""Copy memory and selective copy generators, and a smoke run of benchmarks/memory_tasks.py."""

from __future__ import annotations

import importlib.util
import math
import sys

import pytest
import torch

from _paths import ROOT
from rnnkit.tasks import (
    copy_memory_baseline,
    copy_memory_batch,
    selective_copy_batch,
    selective_copy_symbols,
)


def test_copy_memory_layout():
    x, y = copy_memory_batch(7, 5, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (27, 5) and x.dtype == torch.int64
    assert ((x[:10] >= 1) & (x[:10] <= 8)).all()
    assert (x[10:16] == 0).all() and (x[16:] == 9).all()  # T-1 blanks, 11 delimiters
    assert (y[:17] == 0).all() and torch.equal(y[17:], x[:10])
    assert copy_memory_baseline(1000) == pytest.approx(10 * math.log(8) / 1020)
    assert copy_memory_baseline(1000) == pytest.approx(0.0204, abs=1e-4)  # Bai et al.'s LSTM


def test_copy_memory_is_reproducible_and_checks_arguments():
    a = copy_memory_batch(3, 4, generator=torch.Generator().manual_seed(1))
    b = copy_memory_batch(3, 4, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    with pytest.raises(ValueError, match="T must be"):
        copy_memory_batch(0, 4)
    with pytest.raises(ValueError, match="batch"):
        copy_memory_batch(3, 0)


def test_selective_copy_layout():
    T, n, vocab = 30, 6, 5
    x, y = selective_copy_batch(T, 8, n, vocab, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (T + n, 8)
    assert (x[T:] == vocab + 1).all() and (y[:T] == -100).all()
    assert selective_copy_symbols(vocab) == vocab + 2
    for b in range(8):
        data = x[:T, b][x[:T, b] != 0]
        assert torch.equal(data, y[T:, b])  # the data tokens, in order
        assert ((data >= 1) & (data <= vocab)).all() and len(data) == n
    with pytest.raises(ValueError, match="at least n_tokens"):
        selective_copy_batch(3, 2, n_tokens=4)


@pytest.fixture(scope="module")
def bench():
    path = ROOT / "benchmarks" / "memory_tasks.py"  # the wrapper
    spec = importlib.util.spec_from_file_location("rnnkit_bench_memory_tasks", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_memory_benchmark_smoke(bench, tmp_path, capsys):
    out = tmp_path / "rows.jsonl"
    rows = bench.main(["--tasks", "adding:12,copy:5,selective:20", "--cells", "lstm_chrono,mingru,minlstm",
                       "--hidden", "8", "--budget", "0", "--eval-every", "2", "--eval-batch", "16",
                       "--batch", "4", "--json", str(out), "--markdown"])
    assert [(r.task, r.cell) for r in rows] == [
        (t, c) for t in ("adding", "copy", "selective") for c in ("lstm_chrono", "mingru", "minlstm")
    ]
    for r in rows:
        assert r.steps == 2 and math.isfinite(r.final) and not r.reached
        assert r.executor == ("native" if r.cell == "lstm_chrono" else "scan")
    assert len(out.read_text().splitlines()) == 9
    assert "| adding | 12 | mingru |" in capsys.readouterr().out


def test_memory_benchmark_sigterm_keeps_the_row(bench, tmp_path):
    """A run cut short by SIGTERM ends at its next evaluation and keeps its row; later runs do not
    start; the previous handler is restored."""
    import os
    import signal
    import threading

    out = tmp_path / "rows.jsonl"
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        rows = bench.main(["--tasks", "adding:12", "--cells", "gru,lstm", "--hidden", "8",
                           "--budget", "1e9", "--eval-every", "1", "--eval-batch", "8",
                           "--batch", "4", "--json", str(out)])
    finally:
        timer.cancel()
    assert [r.cell for r in rows] == ["gru"] and rows[0].stopped and rows[0].steps >= 1
    assert len(out.read_text().splitlines()) == 1
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_cosine_schedule_factor():
    from rnnkit.apps.memory.tasks import cosine_factor as f

    assert f(0, 100, 0.01) == pytest.approx(1.0)
    assert f(50, 100, 0.01) == pytest.approx(0.505)
    assert f(100, 100, 0.01) == pytest.approx(0.01) == f(500, 100, 0.01)


def test_scan_benchmark_smoke():
    path = ROOT / "benchmarks" / "scan.py"
    spec = importlib.util.spec_from_file_location("rnnkit_bench_scan", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.main(["--ts", "16", "--batch", "2", "--hidden", "8", "--reps", "1", "--warmup", "0"])
    by = {r["variant"]: r for r in rows}
    assert set(by) == set(module.VARIANTS)
    assert all(r["median_s"] > 0 for r in rows)
    assert by["mingru"]["speedup_vs_ref"] > 0 and by["gru"]["speedup_vs_gru"] == 1.0
    assert module.memory_child("mingru", 64, 2, 8) >= 0


def test_rnnkit_bench_memory_cli(tmp_path, capsys):
    from rnnkit.cli import main

    out = tmp_path / "rows.jsonl"
    code = main(["bench", "memory", "--tasks", "adding:12", "--cells", "gru", "--hidden", "8", "--budget", "0",
                 "--eval-every", "1", "--eval-batch", "8", "--batch", "4", "--json", str(out)])
    assert code == 0 and len(out.read_text().splitlines()) == 1
    code = main(["bench", "memory", "--tasks", "adding:12", "--cells", "gru", "--hidden", "8", "--budget", "0",
                 "--eval-every", "3", "--eval-batch", "8", "--batch", "4", "--cosine-steps", "2",
                 "--lr", "0.5", "--lr-floor", "0.1"])
    assert code == 0
    capsys.readouterr()
    assert main(["bench", "memory", "--report", str(out)]) == 0  # the table of saved rows
    table = capsys.readouterr().out.splitlines()
    row = "| adding | 12 | gru | 1 x 8 | 0.001, plateau(4, floor 0.0156) | mse |"
    assert len(table) == 3 and table[2].startswith(row)
    bad = tmp_path / "bad.jsonl"
    for text, why in [('{"task": "adding"}\n', "not a row of this benchmark (no T, cell, metric ...)"),
                      ("{oops\n", "bad.jsonl:1: not JSON")]:
        bad.write_text(text)
        assert main(["bench", "memory", "--report", str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and why in err, err
    for bad, why in [(["--cells", "nope"], "unknown cell 'nope'"), (["--tasks", "adding:x"], "T must be an integer"),
                     (["--tasks", "sorting:10"], "unknown task"), (["--budget", "x"], "invalid float"),
                     (["--cosine-steps", "-1"], "--cosine-steps must be >= 0")]:
        code = main(["bench", "memory", *bad])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and why in err, err


def test_memory_benchmark_exprnn_cell(bench):
    """The 'exprnn' cell: modReLU Elman whose W_hh is orthogonal (and stays so while it trains)."""
    rows = bench.main(["--tasks", "copy:5", "--cells", "exprnn", "--hidden", "8", "--budget", "0",
                       "--eval-every", "3", "--eval-batch", "16", "--batch", "4"])
    (row,) = rows
    assert row.cell == "exprnn" and row.executor == "fused_cpu" and row.steps == 3
    assert math.isfinite(row.final)
    from rnnkit.apps.memory.tasks import Model

    torch.manual_seed(0)
    model = Model("rnn_modrelu", 10, 10, 8, 1, {"orthogonal": True}, 25, True)
    w = model.rnn.weight_hh_l0
    torch.testing.assert_close(w @ w.T, torch.eye(8), atol=1e-5, rtol=0)
