"""``ema_decay``: an exponential moving average of the weights beside the training
(training/weight_average.py): its recursion, the swap used for validation, what a run saves and
resumes, and a malformed average in a checkpoint refused in one line."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from _training_helpers import tiny
from rnnkit.apps.adding.cli import run_adding
from rnnkit.errors import UserError
from rnnkit.training.weight_average import WeightAverage


def test_the_average_follows_its_recursion():
    p = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    average = WeightAverage([p], decay=0.9)
    want = p.detach().clone()
    for t, value in enumerate([3.0, 5.0, -1.0, 0.5], start=1):
        with torch.no_grad():
            p.fill_(value)
        average.update()
        d = min(0.9, (1 + t) / (10 + t))  # the ramp: 0.18, 0.25, 0.31, 0.36
        want = d * want + (1 - d) * value
        assert torch.allclose(average.shadows[0], want, rtol=0, atol=1e-15)
    assert average.steps == 4


def test_swap_exchanges_and_a_second_swap_restores():
    p = nn.Parameter(torch.arange(4.0))
    average = WeightAverage([p], decay=0.5)
    with torch.no_grad():
        p.add_(10.0)
    average.update()
    raw, shadow = p.detach().clone(), average.shadows[0].clone()
    assert not torch.equal(raw, shadow)
    average.swap()
    assert torch.equal(p.detach(), shadow)
    average.swap()
    assert torch.equal(p.detach(), raw) and torch.equal(average.shadows[0], shadow)
    average.apply()  # the end of training: the parameters keep the averages
    assert torch.equal(p.detach(), shadow) and torch.equal(average.shadows[0], shadow)


def test_a_run_saves_the_averages_and_checkpoints_both(tmp_path):
    cfg, data = tiny(max_epochs=2, ema_decay=0.9)
    metrics = run_adding(cfg, data, tmp_path / "run")
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    ema = ckpt["rnnkit"]["ema"]
    assert ema["steps"] == metrics["global_step"] > 0
    saved = load_file(str(tmp_path / "run" / "model.safetensors"))
    raw = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()}
    names = [k for k in raw if k in saved and raw[k].is_floating_point()]
    assert len(ema["shadows"]) == len(names)
    # model.safetensors holds the averages (in parameter order), the checkpoint the raw weights beside them
    assert all(torch.equal(saved[n], s) for n, s in zip(names, ema["shadows"], strict=True))
    assert any(not torch.equal(saved[n], raw[n]) for n in names)
    plain = run_adding(tiny(max_epochs=2)[0], data, tmp_path / "plain")
    assert metrics["val_loss"] != plain["val_loss"]  # validation measured the averages


def test_ntasgd_with_ema_is_refused():
    with pytest.raises(UserError, match="ntasgd averages the weights itself"):
        tiny(optimizer="ntasgd", ema_decay=0.9)


@pytest.mark.parametrize("how", ["shape", "count", "on_a_run_without_ema"])
def test_a_malformed_average_in_a_checkpoint_is_refused(tmp_path, how):
    from rnnkit.io.saving import CorruptRunFile

    cfg, data = tiny(max_epochs=1, ema_decay=0.9)
    run_adding(cfg, data, tmp_path / "run")
    path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if how == "shape":
        ckpt["rnnkit"]["ema"]["shadows"][0] = torch.zeros(3, 3, 3)
    elif how == "count":
        ckpt["rnnkit"]["ema"]["shadows"].pop()
    torch.save(ckpt, path)
    before = (tmp_path / "run" / "model.safetensors").read_bytes()
    if how == "on_a_run_without_ema":
        shutil.copytree(tmp_path / "run", tmp_path / "plain")
        cfg = tiny(max_epochs=2)[0]
        target = tmp_path / "plain"
    else:
        cfg = tiny(max_epochs=2, ema_decay=0.9)[0]
        target = tmp_path / "run"
    with pytest.raises((CorruptRunFile, UserError)) as info:
        run_adding(cfg, data, target, resume=True)
    assert "\n" not in str(info.value)
    if how != "on_a_run_without_ema":
        assert "rnnkit.ema" in str(info.value)
    assert (target / "model.safetensors").read_bytes() == before
