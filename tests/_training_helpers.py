"""Shared helpers for the training/CLI tests: a tiny adding run, and checks of a run directory."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from rnnkit.apps.adding.task import AddingConfig
from rnnkit.training.config import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

TINY_TRAIN = dict(max_epochs=4, batch_size=32, lr=1e-2, clip_norm=1.0, quiet=True, tensorboard=False,
                  threads=1, plots=False, log_every_n_steps=2)
TINY_DATA = dict(seq_len=10, hidden=8, train_size=128, val_size=64)


def tiny(**overrides) -> tuple[TrainConfig, AddingConfig]:
    train = {k: v for k, v in overrides.items() if k in TrainConfig.__dataclass_fields__}
    data = {k: v for k, v in overrides.items() if k in AddingConfig.__dataclass_fields__}
    return TrainConfig(**{**TINY_TRAIN, **train}).validate(), AddingConfig(**{**TINY_DATA, **data}).validate()


def one_epoch_adding_run(root: Path, **sizes) -> Path:
    """A real one-epoch adding run in ``root/run`` (about a second), for tests that read, resume or
    damage a run directory; ``sizes`` override :func:`tiny`'s (default 64 train / 32 validation)."""
    from rnnkit.apps.adding.cli import run_adding

    cfg, data = tiny(max_epochs=1, **{"train_size": 64, "val_size": 32, **sizes})
    run_adding(cfg, data, root / "run")
    return root / "run"


def cli_flags(cfg: TrainConfig, data: AddingConfig) -> list[str]:
    """The command-line flags reproducing ``tiny(...)``'s configs."""
    flags = ["--epochs", str(cfg.max_epochs), "--batch-size", str(cfg.batch_size), "--lr", str(cfg.lr),
             "--clip-norm", str(cfg.clip_norm), "--threads", str(cfg.threads), "--seed", str(cfg.seed),
             "--no-tensorboard" if not cfg.tensorboard else "--tensorboard", "--quiet",
             "--set", f"plots={str(cfg.plots).lower()}", "--set", f"log_every_n_steps={cfg.log_every_n_steps}",
             "--seq-len", str(data.seq_len), "--hidden", str(data.hidden), "--train-size", str(data.train_size),
             "--val-size", str(data.val_size)]
    return flags


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + e.get("PYTHONPATH", "")
    e.setdefault("OMP_NUM_THREADS", "1")
    return e


def run_cli(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "rnnkit.cli", *args], capture_output=True, text=True, env=env(), timeout=timeout)


def main_captured(capsys, *args) -> tuple[int, str, str]:
    """``rnnkit.cli.main`` in this process: exit code, stdout, stderr (pytest's ``capsys``)."""
    from rnnkit.cli import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def check_run_dir(run: Path, allow_temp: bool = True) -> list[str]:
    """Every file of a run directory parses; returns the names checked. Leftover ``.tmp`` files of an
    interrupted atomic write are allowed (``allow_temp``) and never replace a target."""
    from safetensors.torch import load_file

    from rnnkit.io.atomic import is_temp_file
    from rnnkit.io.runlock import LOCK_FILE

    checked = []
    for path in sorted(p for p in run.rglob("*") if p.is_file()):
        if is_temp_file(path):
            assert allow_temp, f"stray temporary file {path}"
            continue
        if path.name == LOCK_FILE:  # left by a killed writer: the next run takes it over (io/runlock.py)
            continue
        name = path.name
        if name.endswith(".json"):
            json.loads(path.read_text())
        elif name.endswith(".safetensors"):
            load_file(str(path))
        elif name.endswith(".csv"):
            rows = list(csv.DictReader(path.open()))
            assert all(len(r) == len(rows[0]) for r in rows)
        elif name.endswith(".png"):
            import matplotlib.pyplot as plt

            plt.imread(str(path))
        elif name.endswith(".ckpt"):
            ckpt = torch.load(str(path), map_location="cpu", weights_only=False)
            assert "state_dict" in ckpt and "optimizer_states" in ckpt
        elif name.endswith(".md"):  # reports (forecast)
            path.read_text(encoding="utf-8")
        elif name.startswith("events.out.tfevents"):
            from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

            list(EventFileLoader(str(path)).Load())
        else:
            raise AssertionError(f"unexpected file in run directory: {path}")
        checked.append(str(path.relative_to(run)))
    return checked


def final_losses(run: Path) -> dict[str, float]:
    m = json.loads((run / "metrics.json").read_text())
    return {"train_loss": m["train_loss"], "val_loss": m["val_loss"], "global_step": m["global_step"],
            "epoch": m["epoch"]}
