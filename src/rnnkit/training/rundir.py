"""The run directory: what a training run leaves behind, every file written atomically.

::

    RUN_DIR/
      config.json          model spec (name + constructor config), resolved train and task config
      model.safetensors    the weights (latest epoch; NT-ASGD: averaged), no pickle
      metrics.json         status, epoch, step, final and best losses, skipped steps, time
      log.csv              one row every log_every_n_steps batches and one per epoch
      loss.png, lr.png     plots of log.csv
      checkpoints/last.ckpt  Lightning's checkpoint (model, optimiser, scheduler, epoch, callbacks);
                           resume takes only rnnkit's own fields from it (checkpoint_state.py)
      tensorboard/         TensorBoard event files (append-only streams, see docs/training.md)

The log rows live in the checkpoint too (the callback's state), so a resumed run continues the log
exactly where its checkpoint was taken, whatever was written after it.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from rnnkit.io.atomic import save_figure_atomic, write_bytes_atomic, write_json_atomic, write_text_atomic
from rnnkit.io.confine import inside_run_dir, remove_in_run_dir
from rnnkit.io.saving import CONFIG_FILE, WEIGHTS_FILE, model_spec, weights_bytes

CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
METRICS_FILE = "metrics.json"
LOG_FILE = "log.csv"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written to a temporary file and renamed over the target; confined to the
    run directory; loaded with ``weights_only=True`` and, on resume, through ``trust`` only.

    ``trust(checkpoint, source) -> checkpoint`` (set by ``fit`` once the trainer exists) rebuilds the
    loaded dictionary from the fields rnnkit restores (``training/checkpoint_state.py``). Without it
    loading is refused: nothing reaches Lightning unchecked. Saving and removing go through
    :func:`~rnnkit.io.confine.inside_run_dir` (ModelCheckpoint deletes its "previous best" through
    ``remove_checkpoint``): defence in depth behind dropping ModelCheckpoint's state on resume.
    """

    def __init__(self, run_dir: str | os.PathLike) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.trust: Callable[[dict[str, Any], str], dict[str, Any]] | None = None
        #: the checkpoint ``fit`` read and validated before writing anything: restored as it is
        self.preloaded: dict[str, Any] | None = None

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options=None) -> None:
        inside_run_dir(self.run_dir, Path(path).absolute())
        buf = io.BytesIO()
        torch.save(checkpoint, buf)
        write_bytes_atomic(path, buf.getvalue())

    def load_checkpoint(self, path: str | os.PathLike, map_location: Any = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        from rnnkit.training.checkpoint_state import read_checkpoint

        if self.trust is None:
            raise RuntimeError("AtomicCheckpointIO.load_checkpoint without a trust check")
        inside_run_dir(self.run_dir, Path(path).absolute())
        if self.preloaded is not None:
            return self.preloaded
        return self.trust(read_checkpoint(path), str(path))

    def remove_checkpoint(self, path: str | os.PathLike) -> None:
        remove_in_run_dir(self.run_dir, Path(path).absolute())


def last_checkpoint(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / LAST_CHECKPOINT


def render_csv(rows: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None or (isinstance(v, float) and math.isnan(v)) else v)
                         for k, v in row.items()})
    return buf.getvalue()


class RunDirectory(pl.Callback):
    """Writes config.json, log.csv, metrics.json and model.safetensors (global rank 0 only)."""

    def __init__(self, run_dir: str | os.PathLike, run_config: dict[str, Any], log_every_n_steps: int = 10) -> None:
        self.run_dir = Path(run_dir)
        self.run_config = run_config
        self.log_every = log_every_n_steps
        self.rows: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {}
        self.elapsed_before = 0.0  # training seconds of earlier (interrupted) sessions
        self._started = time.perf_counter()
        self._batches = 0

    # ---- state saved inside the Lightning checkpoint -------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"rows": list(self.rows), "best": dict(self.best), "elapsed": self.elapsed()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = list(state.get("rows", []))
        self.best = dict(state.get("best", {}))
        self.elapsed_before = float(state.get("elapsed", 0.0))

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self._started

    # ---- hooks --------------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._started = time.perf_counter()
        if trainer.is_global_zero:
            config = {**self.run_config, "model": model_spec(pl_module.model)}
            write_json_atomic(inside_run_dir(self.run_dir, CONFIG_FILE), config)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._batches += 1
        if self._batches % self.log_every == 0 and outputs:
            self.rows.append({"epoch": trainer.current_epoch, "step": trainer.global_step,
                              "train_loss": float(outputs["loss"]), "val_loss": None,
                              "lr": _lr(trainer)})

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._epoch_done(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # with validation this epoch, on_validation_end recorded it already (then this is a no-op)
        self._epoch_done(trainer, pl_module)

    def _epoch_done(self, trainer, pl_module) -> None:
        total = pl_module._reduce(pl_module._train_sum)
        train = float(total[0] / total[1]) if total[1] > 0 else math.nan
        val = pl_module.epoch_val_loss if pl_module.val_epoch == trainer.current_epoch else math.nan
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step, "train_loss": train,
               "val_loss": val, "lr": _lr(trainer)}
        if self.rows and self.rows[-1].get("epoch_end") and self.rows[-1]["epoch"] == row["epoch"]:
            return  # already recorded this epoch
        row["epoch_end"] = 1
        self.rows.append(row)
        key = "val_loss" if not math.isnan(val) else "train_loss"
        if not math.isnan(row[key]) and (not self.best or row[key] < self.best["value"]):
            self.best = {"metric": key, "value": row[key], "epoch": row["epoch"], "step": row["step"]}
        if trainer.is_global_zero:
            self.write(trainer, pl_module, status="running")

    # ---- files --------------------------------------------------------------------------------
    def metrics(self, trainer, pl_module, status: str, **extra: Any) -> dict[str, Any]:
        epochs = [r for r in self.rows if r.get("epoch_end")]
        last = epochs[-1] if epochs else {}
        return {
            "status": status,
            "epoch": last.get("epoch"),
            "epochs_completed": len(epochs),
            "global_step": trainer.global_step,
            "train_loss": last.get("train_loss"),
            "val_loss": last.get("val_loss"),
            "best": self.best or None,
            "skipped_steps": getattr(pl_module, "skipped_steps", 0),
            "ntasgd_switched": getattr(pl_module, "ntasgd_switched", False),
            "world_size": trainer.world_size,
            "train_seconds": round(self.elapsed(), 3),
            **extra,
        }

    def write(self, trainer, pl_module, status: str, plots: bool = False, weights: bool = True,
              **extra: Any) -> None:
        """metrics.json and log.csv; ``model.safetensors`` too unless ``weights`` is False (a stopped run
        keeps the weights of its last epoch, those of ``checkpoints/last.ckpt``)."""
        if weights:
            self._write_weights(pl_module)
        write_text_atomic(inside_run_dir(self.run_dir, LOG_FILE), render_csv(self.rows))
        write_json_atomic(inside_run_dir(self.run_dir, METRICS_FILE), self.metrics(trainer, pl_module, status, **extra))
        if plots:
            plot_log(self.rows, self.run_dir)

    def _write_weights(self, pl_module) -> None:
        state = pl_module.averaged_state() if hasattr(pl_module, "averaged_state") else None
        model = pl_module.model
        if state is not None:
            import copy

            model = copy.deepcopy(model)
            model.load_state_dict(state)
        import rnnkit

        write_bytes_atomic(inside_run_dir(self.run_dir, WEIGHTS_FILE),
                           weights_bytes(model, {"rnnkit_version": rnnkit.__version__}))


def _lr(trainer) -> float | None:
    if not trainer.optimizers:
        return None
    return float(trainer.optimizers[0].param_groups[0]["lr"])


def plot_log(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """loss.png (train and validation loss against step) and lr.png from the log rows."""
    if not rows:
        return []
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    written = []
    steps = [r for r in rows if not r.get("epoch_end") and r.get("train_loss") is not None]
    epochs = [r for r in rows if r.get("epoch_end")]
    fig, ax = plt.subplots(figsize=(6, 4))
    if steps:
        ax.plot([r["step"] for r in steps], [r["train_loss"] for r in steps], lw=1, alpha=0.6, label="train (batch)")
    ep_train = [(r["step"], r["train_loss"]) for r in epochs if _finite(r.get("train_loss"))]
    ep_val = [(r["step"], r["val_loss"]) for r in epochs if _finite(r.get("val_loss"))]
    if ep_train:
        ax.plot(*zip(*ep_train, strict=True), "o-", label="train (epoch mean)")
    if ep_val:
        ax.plot(*zip(*ep_val, strict=True), "s-", label="validation")
    values = [v for _, v in ep_train + ep_val] + [r["train_loss"] for r in steps]
    if values and min(values) > 0:
        ax.set_yscale("log")
    ax.set_title("training and validation loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (the task's training objective)")
    ax.legend()
    ax.grid(alpha=0.3)
    written.append(save_figure_atomic(fig, inside_run_dir(out, "loss.png")))
    plt.close(fig)
    lrs = [(r["step"], r["lr"]) for r in rows if _finite(r.get("lr"))]
    if lrs:
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.plot(*zip(*lrs, strict=True))
        ax.set_title("learning-rate schedule")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("learning rate")
        ax.grid(alpha=0.3)
        written.append(save_figure_atomic(fig, inside_run_dir(out, "lr.png")))
        plt.close(fig)
    return written


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)
