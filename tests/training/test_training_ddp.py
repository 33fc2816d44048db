"""DDP: two CPU processes under torchrun (gloo), each with half of the global batch, end where one
process with the whole batch ends (same seed). Tolerance: relative 1e-4 on the final losses (the
all-reduced mean of two half-batch gradients differs from the one-batch mean by rounding only)."""

from __future__ import annotations

import json
import subprocess

import pytest

from _training_helpers import PY, cli_flags, env, final_losses, tiny
from rnnkit.apps.adding.cli import run_adding


def test_torchrun_two_processes_match_one(tmp_path):
    cfg, data = tiny(max_epochs=3, batch_size=32, train_size=128, val_size=64)
    run_adding(cfg, data, tmp_path / "one")
    one = final_losses(tmp_path / "one")
    cmd = [PY, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc-per-node", "2",
           "-m", "rnnkit.cli", "adding", "train", "--out", str(tmp_path / "two"), *cli_flags(cfg, data)]
    res = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    two = final_losses(tmp_path / "two")
    metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert two["global_step"] == one["global_step"]
    assert two["val_loss"] == pytest.approx(one["val_loss"], rel=1e-4)
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-4)


def _budget_progress_on_rank(rank: int, port: int, results) -> None:
    import time

    import torch.distributed as dist

    from rnnkit.training.time_budget import TimeBudget

    class Budget(TimeBudget):
        def budget_minutes(self) -> float:
            return 1.0

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        budget = Budget()
        budget._t0 = time.perf_counter() - 6.0 * (rank + 1)  # rank 1's clock started 6 s earlier
        results.put((rank, budget.budget_progress()))
    finally:
        dist.destroy_process_group()


def test_time_budget_progress_is_the_same_on_every_process():
    """Each process reads its own clock; unsynchronised, a time-driven cosine schedule would step
    different learning rates on each and their weights would drift apart under DDP."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_budget_progress_on_rank, args=(r, port, results)) for r in range(2)]
    for p in procs:
        p.start()
    got = dict(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert got[0] == got[1]
    assert 0.2 <= got[0] < 0.25  # rank 1's 12 s of a one-minute budget, the larger of the two


def test_torchrun_only_the_main_process_scores_and_reports(tmp_path):
    """After training, scoring the validation set and writing metrics.json is the main process's work:
    the other processes return (before, each decoded the whole validation set again and printed its own
    summary line)."""
    pairs = ["wort\tword"] + [f"{w}\t{w[::-1]}" for w in ("abc", "bcd", "cde", "def", "efg", "fgh", "ghi", "hij")] * 8
    data = tmp_path / "pairs.tsv"
    data.write_text("\n".join(pairs) + "\n", encoding="utf-8")
    cmd = [PY, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc-per-node", "2",
           "-m", "rnnkit.cli", "translate", "train", str(data), "--out", str(tmp_path / "run"), "--tokenizer", "char",
           "--hidden", "16", "--embedding-size", "8", "--epochs", "1", "--batch-size", "8", "--threads", "1",
           "--set", "plots=false", "--set", "tensorboard=false"]
    res = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert res.stdout.count("completed: step") == 1, res.stdout
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and "valid" in metrics["translate"]
