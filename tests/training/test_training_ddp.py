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
