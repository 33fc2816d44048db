"""Divergence (issue #23, training/divergence.py): Adam at lr 1e9 ends as ``diverged``, never
``completed``, with one line naming the step and what to do; the run keeps its last finite weights
and model.safetensors agrees with checkpoints/last.ckpt."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from _training_helpers import tiny
from rnnkit.apps.adding.cli import run_adding
from rnnkit.cli import main
from rnnkit.training.divergence import diverged

FLAGS = ["--seq-len", "10", "--hidden", "8", "--train-size", "64", "--val-size", "32", "--threads", "1",
         "--no-tensorboard", "--quiet", "--set", "plots=false", "--set", "log_every_n_steps=1"]


def test_rule():
    assert not diverged(1e3, 0.17) and diverged(2e4, 0.17) and diverged(9e17, 0.17)
    assert not diverged(5.0, math.inf)  # nothing to compare with yet
    assert not diverged(-10.0, -20.0) and diverged(3e5, -20.0)  # negative losses (likelihoods)
    assert not diverged(math.nan, 1.0)  # non-finite losses are NonFiniteLoss's business


def test_adam_at_lr_1e9_is_diverged_not_completed(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["adding", "train", "--out", str(run), "--optimizer", "adam", "--lr", "1e9", "--epochs", "3",
                 *FLAGS])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "diverged at step" in err and "--lr" in err and "--clip-norm" in err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "diverged"
    assert not (run / "model.safetensors").exists()  # no finite epoch end: no weights claimed
    assert not (run / ".rnnkit.lock").exists()


@pytest.mark.parametrize("lr", ["1e9", "1e7"])
def test_diverging_resume_keeps_the_last_finite_weights(tmp_path, capsys, lr):
    run = tmp_path / "run"
    cfg, data = tiny(max_epochs=1, train_size=64, val_size=32)
    run_adding(cfg, data, run)
    before = load_file(str(run / "model.safetensors"))
    code = main(["adding", "train", "--resume", str(run), "--lr", lr, "--epochs", "3", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "diverged" in err, err
    assert json.loads((run / "metrics.json").read_text())["status"] == "diverged"
    after = load_file(str(run / "model.safetensors"))
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for name, value in after.items():
        assert torch.equal(value, before[name])  # not rewritten with the diverged weights
        assert torch.equal(value, ckpt[f"model.{name}"])  # and the checkpoint agrees
