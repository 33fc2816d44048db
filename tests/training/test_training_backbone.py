"""The training backbone end to end on the adding task: run directory, resume, init-from, NaN guard,
config precedence, optimisers and schedules."""

from __future__ import annotations

import json
import math

import pytest
import torch

import rnnkit
from _training_helpers import check_run_dir, one_epoch_adding_run, tiny
from rnnkit.apps.adding.cli import run_adding
from rnnkit.apps.adding.task import AddingRegressor, AddingTask
from rnnkit.errors import UserError
from rnnkit.training import NonFiniteLoss
from rnnkit.training.cli_support import parse_set, resolve_run
from rnnkit.training.runner import fit, seed_everything


def test_run_directory_layout_and_load(tmp_path):
    cfg, data = tiny(max_epochs=2, plots=True, tensorboard=True)
    metrics = run_adding(cfg, data, tmp_path / "run")
    run = tmp_path / "run"
    names = set(check_run_dir(run, allow_temp=False))
    assert {"config.json", "model.safetensors", "metrics.json", "log.csv", "loss.png", "lr.png",
            "checkpoints/last.ckpt"} <= names
    assert any(n.startswith("tensorboard/") for n in names)
    assert metrics["status"] == "completed" and metrics["epochs_completed"] == 2
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["max_epochs"] == 2 and config["task"]["hidden"] == 8
    model = rnnkit.load(run)
    assert isinstance(model, AddingRegressor)
    x = torch.rand(10, 3, 2)
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    ref = AddingRegressor("lstm", 8)
    ref.load_state_dict({k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()})
    assert torch.allclose(model(x), ref.eval()(x))
    with pytest.raises(UserError, match="already holds a run"):
        run_adding(cfg, data, run)


def test_resume_matches_uninterrupted_run(tmp_path):
    cfg, data = tiny(max_epochs=4, schedule="step", step_size=1, gamma=0.7, optimizer="adamw", weight_decay=0.01)
    full = run_adding(cfg, data, tmp_path / "full")
    half, _ = tiny(max_epochs=2, schedule="step", step_size=1, gamma=0.7, optimizer="adamw", weight_decay=0.01)
    run_adding(half, data, tmp_path / "resumed")
    resumed = run_adding(cfg, data, tmp_path / "resumed", resume=True)
    assert resumed["global_step"] == full["global_step"]
    assert resumed["val_loss"] == pytest.approx(full["val_loss"], rel=1e-6)
    assert resumed["train_loss"] == pytest.approx(full["train_loss"], rel=1e-6)
    log_full = (tmp_path / "full" / "log.csv").read_text().splitlines()
    log_res = (tmp_path / "resumed" / "log.csv").read_text().splitlines()
    assert len(log_full) == len(log_res)  # the log continues exactly where the checkpoint was taken
    ckpt = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["lr_schedulers"][0]["last_epoch"] == 4  # the schedule was restored and continued


def test_init_from_takes_weights_only(tmp_path):
    cfg, data = tiny(max_epochs=1)
    run_adding(cfg, data, tmp_path / "a")
    seed_everything(123)
    model = AddingRegressor("lstm", 8)
    task = AddingTask(model, tiny(max_epochs=1, lr=1e-12)[0], data)
    fit(task, tmp_path / "b", init_from=tmp_path / "a")
    a, b = rnnkit.load(tmp_path / "a"), rnnkit.load(tmp_path / "b")
    for (k, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.allclose(va, vb, atol=1e-6), k
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["global_step"] == 4  # fresh optimiser, epoch 0
    wrong = AddingTask(AddingRegressor("gru", 8), cfg, data)
    with pytest.raises(UserError, match=r"tensors do not match|shape"):
        fit(wrong, tmp_path / "c", init_from=tmp_path / "a")


class NaNAt(AddingTask):
    """Makes the loss NaN at the given training batches (counted from 0 over the whole run)."""

    def __init__(self, *args, nan_batches=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.nan_batches = set(nan_batches)
        self.batches = 0

    def compute_loss(self, batch, state):
        loss, state = super().compute_loss(batch, state)
        if self.training:
            if self.batches in self.nan_batches:
                loss = loss * float("nan")
            self.batches += 1
        return loss, state


def test_nan_guard_stops_with_step_and_keeps_checkpoint(tmp_path):
    cfg, data = tiny(max_epochs=4)
    seed_everything(cfg.seed)
    task = NaNAt(AddingRegressor("lstm", 8), cfg, data, nan_batches={9})  # 4 steps per epoch: epoch 2
    with pytest.raises(NonFiniteLoss, match=r"step 9 \(epoch 2, batch 1\)") as info:
        fit(task, tmp_path)
    assert info.value.step == 9
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "stopped_nonfinite" and metrics["nonfinite_step"] == 9
    check_run_dir(tmp_path, allow_temp=False)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 8 and ckpt["epoch"] == 1  # the last good epoch end
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())
    assert all(torch.isfinite(v).all() for v in rnnkit.load(tmp_path).state_dict().values())


def test_nan_guard_skip_policy(tmp_path):
    cfg, data = tiny(max_epochs=2, nan_policy="skip")
    task = NaNAt(AddingRegressor("lstm", 8), cfg, data, nan_batches={3, 6})
    metrics = fit(task, tmp_path)
    assert metrics["status"] == "completed" and metrics["skipped_steps"] == 2 and metrics["global_step"] == 6
    assert math.isfinite(metrics["val_loss"])


def test_config_file_and_flags_precedence(tmp_path):
    from rnnkit.apps.adding.task import AddingConfig

    f = tmp_path / "run.yaml"
    f.write_text("lr: 0.5\nhidden: 16\nbatch-size: 8\n")
    cfg, data = resolve_run(AddingConfig, {"lr": 0.25, "hidden": None}, f)
    assert (cfg.lr, cfg.batch_size, data.hidden) == (0.25, 8, 16)
    f.write_text("lrr: 0.5\n")
    with pytest.raises(UserError, match=r"run.yaml: unknown option 'lrr'"):
        resolve_run(AddingConfig, {}, f)
    f.write_text("lr: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        resolve_run(AddingConfig, {}, f)
    f.write_text("lr: fast\n")
    with pytest.raises(UserError, match=r"lr = 'fast' is not allowed: expected a finite number > 0"):
        resolve_run(AddingConfig, {}, f)
    f.write_text("lr: 1e-4\n")  # YAML 1.1 reads this as a string
    assert resolve_run(AddingConfig, {}, f)[0].lr == 1e-4
    assert resolve_run(AddingConfig, parse_set(["min-lr=1e-5"]))[0].min_lr == 1e-5
    with pytest.raises(UserError, match=r"^the command line: lr = 'abc' is not allowed"):
        resolve_run(AddingConfig, parse_set(["lr=abc"]))
    with pytest.raises(UserError, match="exclusive"):
        resolve_run(AddingConfig, {"clip_norm": 1.0, "clip_value": 1.0})
    with pytest.raises(UserError, match="optimizer = 'adagrad' is not allowed: expected one of: adam"):
        resolve_run(AddingConfig, {"optimizer": "adagrad"})


def test_ntasgd_switches_to_averaged_sgd(tmp_path):
    # lr so large that validation cannot improve for long: the trigger fires, then ASGD runs on
    cfg, data = tiny(max_epochs=5, optimizer="ntasgd", lr=3.0, ntasgd_patience=1, clip_norm=1.0)
    metrics = run_adding(cfg, data, tmp_path / "run")
    assert metrics["ntasgd_switched"]
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert "ax" in next(iter(ckpt["optimizer_states"][0]["state"].values()))  # ASGD's running average
    resumed = run_adding(cfg, data, tmp_path / "run", resume=True)  # resumes into ASGD, nothing to do
    assert resumed["ntasgd_switched"]


def test_cosine_warmup_schedule_and_clip_value(tmp_path):
    cfg, data = tiny(max_epochs=2, schedule="cosine", warmup_steps=4, min_lr=1e-4, clip_norm=None, clip_value=0.5)
    run_adding(cfg, data, tmp_path / "run")
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()[1:]
    lrs = [float(r.split(",")[4]) for r in rows]
    assert lrs[0] < 1e-2 and lrs[-1] < lrs[1]  # warm-up, then decay


def test_cosine_follows_a_time_budget_when_it_runs_ahead_of_the_steps():
    from rnnkit.training.config import TrainConfig
    from rnnkit.training.optim import build_scheduler

    cfg = TrainConfig(lr=1.0, schedule="cosine", min_lr=0.01)
    spent = [0.0]
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = build_scheduler(opt, cfg, total_steps=10**6, time_progress=lambda: spent[0])
    assert opt.param_groups[0]["lr"] == pytest.approx(1.0)
    spent[0] = 0.5  # half the budget gone after one step of a million: the time decides
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01 + 0.99 * 0.5)
    spent[0] = 1.7  # past the budget: the floor, not beyond it
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)


def test_a_run_that_trains_zero_steps_says_so(tmp_path, capsys):
    """A training set smaller than one batch (full batches only) trains nothing: the status is
    'no_steps' and a line says why, never 'completed'."""
    run = one_epoch_adding_run(tmp_path, train_size=16)  # batch 32
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "no_steps"
    assert "trained 0 steps" in capsys.readouterr().err
