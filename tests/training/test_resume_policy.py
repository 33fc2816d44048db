"""``--resume`` with changed options (issue #23): the documented ones are applied for real and
recorded in config.json's ``resumes`` history; any other change is refused with one line, exit 2,
and the run directory is left exactly as it was."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from _training_helpers import one_epoch_adding_run, tiny
from rnnkit.apps.adding.cli import run_adding
from rnnkit.cli import main
from rnnkit.training.resume_policy import RESUMABLE_TRAIN

CKPT = Path("checkpoints") / "last.ckpt"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return one_epoch_adding_run(tmp_path_factory.mktemp("trained"))


def _copy(trained: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    return run


def _digests(run: Path) -> dict[str, str]:
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run.rglob("*")) if p.is_file()}


def _resume(run: Path, capsys, *extra: str) -> tuple[int, str]:
    code = main(["adding", "train", "--resume", str(run), "--quiet", *extra])
    return code, capsys.readouterr().err


def test_new_lr_is_applied_and_recorded(trained, tmp_path, capsys):
    run = _copy(trained, tmp_path)
    code, err = _resume(run, capsys, "--epochs", "2", "--lr", "0.05")
    assert code == 0, err
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["lr"] == 0.05 and config["train"]["max_epochs"] == 2  # what actually ran
    [record] = config["resumes"]
    assert record["changed"] == {"lr": [0.01, 0.05], "max_epochs": [1, 2]}
    assert record["from_epoch"] == 0 and record["from_step"] > 0 and record["time"]
    ckpt = torch.load(run / CKPT, weights_only=True)
    group = ckpt["optimizer_states"][0]["param_groups"][0]
    assert group["lr"] == pytest.approx(0.05) and group["initial_lr"] == pytest.approx(0.05)
    assert ckpt["lr_schedulers"][0]["base_lrs"] == [pytest.approx(0.05)]
    lrs = [json.loads(json.dumps(r)) for r in ckpt["callbacks"]["RunDirectory"]["rows"] if r.get("epoch") == 1]
    assert lrs and all(r["lr"] == pytest.approx(0.05) for r in lrs)  # the optimiser really used it
    # a second resume appends, never overwrites
    code, err = _resume(run, capsys, "--epochs", "3")
    assert code == 0, err
    config = json.loads((run / "config.json").read_text())
    assert [r["changed"] for r in config["resumes"]] == [{"lr": [0.01, 0.05], "max_epochs": [1, 2]},
                                                         {"max_epochs": [2, 3]}]
    assert config["train"]["lr"] == 0.05


def test_lr_scales_a_running_schedule(tmp_path, capsys):
    """A step schedule decays by gamma per epoch: the resumed run continues the decay from the new base."""
    run = tmp_path / "run"
    cfg, data = tiny(max_epochs=2, train_size=64, val_size=32, schedule="step", step_size=1, gamma=0.5)
    run_adding(cfg, data, run)
    code, err = _resume(run, capsys, "--epochs", "3", "--lr", "0.1")
    assert code == 0, err
    group = torch.load(run / CKPT, weights_only=True)["optimizer_states"][0]["param_groups"][0]
    assert group["lr"] == pytest.approx(0.1 * 0.5**3) and group["initial_lr"] == pytest.approx(0.1)


@pytest.mark.parametrize("flags", [["--hidden", "16"], ["--cell", "gru"], ["--seq-len", "12"],
                                   ["--optimizer", "sgd"], ["--seed", "3"], ["--batch-size", "16"],
                                   ["--set", "weight_decay=0.1"], ["--train-size", "32"]])
def test_other_changes_are_refused_and_touch_nothing(trained, tmp_path, capsys, flags):
    run = _copy(trained, tmp_path)
    before = _digests(run)
    code, err = _resume(run, capsys, *flags)
    assert code == 2 and err.count("\n") == 1, err
    assert "--resume cannot change" in err and "--out" in err
    assert _digests(run) == before
    assert not (run / ".rnnkit.lock").exists()


def test_resumable_options_are_train_options():
    from rnnkit.training.config import TrainConfig

    assert set(RESUMABLE_TRAIN) <= set(TrainConfig.__dataclass_fields__)
    assert {"lr", "max_epochs", "max_steps", "early_stopping_patience", "threads"} <= RESUMABLE_TRAIN


def test_crafted_history_is_refused(trained, tmp_path, capsys):
    run = _copy(trained, tmp_path)
    config = json.loads((run / "config.json").read_text())
    config["resumes"] = "not a list"
    (run / "config.json").write_text(json.dumps(config))
    before = _digests(run)
    code, err = _resume(run, capsys, "--epochs", "2")
    assert code == 2 and err.count("\n") == 1 and "resumes" in err
    assert _digests(run) == before
