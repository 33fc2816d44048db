"""The child side of the crash harness (tests/test_crash_harness.py): one training session per process.

Sessions are started by a ``multiprocessing`` fork server that imported this module (torch, Lightning,
every app, the C++ extensions) once, so a session starts in milliseconds from a process that is
single-threaded and has never trained: the harness never forks pytest itself (under pytest-xdist a
worker has a second, execnet, thread whose locks a fork would copy) and no session inherits another's
state. A session drives the app's own command (``rnnkit APP train --out`` or ``--resume``), except
forecast, which has no --resume and runs its pipeline with the backbone's ``fit`` told to resume.
"""

from __future__ import annotations

import functools
import json
import os
import random
import signal
import sys
import time
from pathlib import Path

import lightning.pytorch  # noqa: F401  (imported once, in the fork server)
import statsmodels.api  # noqa: F401
import torch

import rnnkit.apps.adding.cli
import rnnkit.apps.classify.pipeline
import rnnkit.apps.forecast.cli
import rnnkit.apps.speech.task
import rnnkit.apps.text.task
import rnnkit.apps.translate.task
import rnnkit.training.runner
from _paths import DATA, TESTS
from rnnkit._ext import extension_names, load_extension
from rnnkit.cli import main

TRAIN = ["--threads", "1", "-q", "--seed", "3", "--set", "log_every_n_steps=1"]
APPS = ("adding", "text", "forecast", "translate", "speech", "classify")

# loaded here, in the fork server: no session enters cpp_extension.load (rnnkit._ext.build_lock)
for _name in extension_names():
    load_extension(_name)


def write_data(app: str, root: Path) -> list[str]:
    """The app's tiny data set in ``root`` (once per harness); returns the data arguments of its command."""
    root.mkdir(parents=True, exist_ok=True)
    if app == "text":
        (root / "corpus.txt").write_text("the cat sat on the mat. " * 30)
        return [str(root / "corpus.txt")]
    if app == "translate":
        from _translate_helpers import reversal_tsv

        rng = random.Random(1)
        (root / "train.tsv").write_text(reversal_tsv(96, rng))
        (root / "valid.tsv").write_text(reversal_tsv(16, rng))
        return [str(root / "train.tsv"), "--valid", str(root / "valid.tsv")]
    if app == "speech":
        return [str(_speech_set(root))]
    if app == "classify":
        if str(TESTS / "apps" / "classify") not in sys.path:  # tests mirror src: the helper sits beside its app
            sys.path.insert(0, str(TESTS / "apps" / "classify"))
        from test_classify_cli import tiny_csv

        return ["--data", str(tiny_csv(root / "classify.csv"))]
    return []


def _speech_set(root: Path) -> Path:
    """24 short noisy tone sequences, 16 train and 8 valid (espeak-ng is not needed)."""
    from _speech_helpers import tone_set

    return tone_set(root, n=24, n_train=16)


def command(app: str, epochs: int, run_dir: Path, resume: bool, data: list[str]) -> list[str]:
    """The app's train command for a tiny deterministic run (a second or two)."""
    target = ["--resume" if resume else "--out", str(run_dir)]
    if app == "adding":
        return ["adding", "train", *target, *TRAIN, "--epochs", str(epochs), "--batch-size", "16", "--lr", "1e-2",
                "--clip-norm", "1", "--seq-len", "6", "--hidden", "6", "--train-size", "48", "--val-size", "16",
                "--tensorboard", "--set", "plots=true"]
    if app == "text":
        return ["text", "train", *data, *target, *TRAIN, "--epochs", str(epochs), "--batch-size", "4", "--lr", "1e-2",
                "--hidden", "8", "--embedding-size", "8", "--bptt", "8", "--epoch-steps", "3", "--output-dropout",
                "0", "--set", "tensorboard=false", "--set", "plots=false"]
    if app == "translate":
        return ["translate", "train", *data, *target, *TRAIN, "--epochs", str(epochs), "--tokenizer", "char",
                "--hidden", "8", "--embedding-size", "8", "--batch-size", "16", "--lr", "1e-2", "--dropout", "0",
                "--label-smoothing", "0", "--beam", "1", "--set", "tensorboard=false", "--set", "plots=false"]
    if app == "speech":
        return ["speech", "train", *data, *target, *TRAIN, "--epochs", str(epochs), "--hidden", "8", "--layers", "1",
                "--channels", "4", "--n-mels", "16", "--batch-size", "4", "--dropout", "0", "--no-spec-augment",
                "--set", "plots=false", "--set", "warmup_steps=0"]
    if app == "classify":
        return ["classify", "train", *data, *target, *TRAIN, "--epochs", str(epochs), "--hidden", "8",
                "--set", "filters=8,8,8", "--set", "baseline_window=0.2", "--set", "dropout=0"]
    raise ValueError(app)


def _forecast(epochs: int, run_dir: Path, resume: bool) -> None:
    """``rnnkit forecast train``'s pipeline with the backbone's ``fit`` told to resume."""
    from rnnkit.apps.forecast.cli import run_train
    from rnnkit.apps.forecast.options import ForecastConfig
    from rnnkit.training.config import TrainConfig

    rnnkit.training.runner.fit = functools.partial(rnnkit.training.runner.fit, resume=resume)
    cfg = TrainConfig(max_epochs=epochs, batch_size=32, lr=3e-3, clip_norm=1.0, tensorboard=False, plots=False,
                      quiet=True, threads=1, log_every_n_steps=1, seed=3).validate()
    fcfg = ForecastConfig(data=str(DATA / "forecast_airpassengers.csv"), horizon=12, hidden=4, n_samples=10,
                          baselines="naive", plot_series=1, calibrate=False).validate()
    run_train(cfg, fcfg, run_dir, command=None)


def _arm_write_kill(k: int, phase: str) -> None:
    """SIGKILL this process during its k-th atomic write (rnnkit.io.atomic: fsync, then rename): with the
    temporary file cut to half ("partial"), before the rename, or just after it."""
    count = {"fsync": 0, "replace": 0}
    fsync, replace = os.fsync, os.replace

    def killing_fsync(fd: int) -> None:
        count["fsync"] += 1
        if count["fsync"] == k and phase in ("partial", "before_rename"):
            if phase == "partial":
                os.ftruncate(fd, os.fstat(fd).st_size // 2)
            os.kill(os.getpid(), signal.SIGKILL)
        fsync(fd)

    def killing_replace(src, dst, **kw) -> None:
        replace(src, dst, **kw)
        count["replace"] += 1
        if count["replace"] == k and phase == "after_rename":
            os.kill(os.getpid(), signal.SIGKILL)

    os.fsync, os.replace = killing_fsync, killing_replace


def _record_writes(run_dir: Path, t0: float) -> list[tuple[float, str]]:
    """Every atomic write's rename from now on, as (seconds since ``t0``, path inside ``run_dir``)."""
    writes: list[tuple[float, str]] = []
    replace = os.replace

    def recording_replace(src, dst, **kw) -> None:
        replace(src, dst, **kw)
        writes.append((time.perf_counter() - t0, os.path.relpath(os.fspath(dst), run_dir)))

    os.replace = recording_replace
    return writes


def session(app: str, epochs: int, run_dir: Path, resume: bool, data: list[str], plan: tuple | None,
            log: Path, profile: Path | None = None) -> None:
    """One training session (the fork server's child): exit 0 when the training completed. ``profile``: write
    there, as JSON, the session's duration and its atomic writes in order (``{"seconds", "writes": [[t, path]]}``):
    the harness plans its kills from the uninterrupted reference run's."""
    t0 = time.perf_counter()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    torch.set_num_threads(1)
    writes = _record_writes(run_dir, t0) if profile is not None else []
    if plan is not None and plan[0] == "write":
        _arm_write_kill(plan[1], plan[2])
    if app == "forecast":
        _forecast(epochs, run_dir, resume)
        code = 0
    else:
        code = main(command(app, epochs, run_dir, resume, data))
    if profile is not None:
        profile.write_text(json.dumps({"seconds": time.perf_counter() - t0, "writes": writes}))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
