"""A training killed with SIGKILL at random moments resumes with --resume to the same final metrics as
an uninterrupted run with the same seed, and no run directory ever holds a truncated file.

Tolerance: relative 1e-6 on the final train and validation losses (CPU runs with the same seed and
thread count are in fact bitwise identical; the tolerance only absorbs float printing).
The fast test kills one run; the slow one kills 10 runs at random moments (``-m slow``).
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import pytest

from _training_helpers import PY, check_run_dir, cli_flags, env, final_losses, tiny
from rnnkit.apps.adding.cli import run_adding

CFG = dict(max_epochs=12, train_size=256, val_size=64, tensorboard=True, plots=True)
LONG = dict(CFG, max_epochs=30, train_size=512)  # the slow test: several seconds of training to hit


def _reference(tmp_path_factory, cfg_dict):
    cfg, data = tiny(**cfg_dict)
    out = tmp_path_factory.mktemp("ref") / "run"
    run_adding(cfg, data, out)
    return final_losses(out)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return _reference(tmp_path_factory, CFG)


@pytest.fixture(scope="module")
def reference_long(tmp_path_factory):
    return _reference(tmp_path_factory, LONG)


def _kill_and_resume(tmp_path, reference, delay: float, resume_in_process: bool, after_checkpoint: bool,
                     cfg_dict: dict = CFG) -> dict:
    """Start a training, SIGKILL it ``delay`` seconds after it starts (``after_checkpoint``: after its
    first checkpoint appears), check the directory, resume, compare with the reference.

    A kill before config.json exists (the first milliseconds) leaves nothing to resume: the run is
    started again with ``--out``, as the error message of ``--resume`` says."""
    cfg, data = tiny(**cfg_dict)
    run = tmp_path / "run"
    proc = subprocess.Popen([PY, "-m", "rnnkit.cli", "adding", "train", "--out", str(run), *cli_flags(cfg, data)],
                            env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = run / "checkpoints" / "last.ckpt"
    if after_checkpoint:
        while proc.poll() is None and not ckpt.exists():
            time.sleep(0.01)
    start = time.monotonic()
    while proc.poll() is None and time.monotonic() - start < delay:
        time.sleep(0.01)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    if not killed:
        assert proc.returncode == 0, proc.stderr.read().decode()
    epochs_before = 0
    if run.exists():
        check_run_dir(run)  # whatever moment the kill hit, every file parses
        if ckpt.exists():
            import torch

            epochs_before = torch.load(ckpt, weights_only=False)["epoch"] + 1
    started = (run / "config.json").exists()
    if resume_in_process:
        run_adding(cfg, data, run, resume=started)
    else:
        again = ["--resume", str(run), "--quiet"] if started else ["--out", str(run), *cli_flags(cfg, data)]
        res = subprocess.run([PY, "-m", "rnnkit.cli", "adding", "train", *again],
                             env=env(), capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr
    check_run_dir(run, allow_temp=False)
    got = final_losses(run)
    assert got["global_step"] == reference["global_step"] and got["epoch"] == reference["epoch"]
    assert got["val_loss"] == pytest.approx(reference["val_loss"], rel=1e-6)
    assert got["train_loss"] == pytest.approx(reference["train_loss"], rel=1e-6)
    return {"killed": killed, "delay": round(delay, 2), "epochs_done_when_killed": epochs_before,
            "started": started}


def test_sigkill_then_resume_fast(tmp_path, reference):
    # kill the moment the first checkpoint appears: on a quiet machine the remaining epochs take well
    # under a second, so any further delay could let the run finish before the kill
    out = _kill_and_resume(tmp_path, reference, delay=0.0, resume_in_process=True, after_checkpoint=True)
    assert out["killed"] and 1 <= out["epochs_done_when_killed"] < CFG["max_epochs"]


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(10))
def test_sigkill_at_random_points_then_resume(tmp_path, reference_long, trial):
    # even trials: any moment from the start (often during start-up, before the first checkpoint);
    # odd trials: a random moment after the first checkpoint (mid-training, mid-write)
    rng = random.Random(1000 + trial)
    after = trial % 2 == 1
    delay = rng.uniform(0.0, 4.0) if after else rng.uniform(0.5, 10.0)
    out = _kill_and_resume(tmp_path, reference_long, delay, resume_in_process=False, after_checkpoint=after,
                           cfg_dict=LONG)
    sys.stderr.write(f"trial {trial}: {out}\n")
