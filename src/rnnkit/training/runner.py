"""``fit``: train a :class:`~rnnkit.training.task.SequenceTask` into a run directory.

Builds the Lightning ``Trainer`` from a :class:`TrainConfig` (progress bar, loggers, atomic
checkpoints, early stopping, DDP under ``torchrun``), handles ``resume`` (model, optimiser,
scheduler, epoch, log and early-stopping counters from ``checkpoints/last.ckpt``, each field checked by
``checkpoint_state.trusted_state``) and ``init_from`` (weights only,
from another run's ``model.safetensors``), and finishes the run directory (metrics, log, plots).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnkit.errors import UserError
from rnnkit.io.atomic import is_temp_file, write_json_atomic
from rnnkit.io.confine import inside_run_dir, remove_in_run_dir
from rnnkit.io.runlock import run_lock
from rnnkit.io.saving import CONFIG_FILE, WEIGHTS_FILE, load_state_into, load_weights, model_spec, read_config
from rnnkit.training.checkpoint_state import read_checkpoint, trusted_state
from rnnkit.training.config import TrainConfig, as_dict
from rnnkit.training.divergence import Diverged
from rnnkit.training.resume_policy import lr_scale, resume_changes, with_history
from rnnkit.training.rundir import CHECKPOINT_DIR, LAST_CHECKPOINT, AtomicCheckpointIO, RunDirectory, last_checkpoint
from rnnkit.training.task import NonFiniteLoss, SequenceTask


def seed_everything(seed: int, threads: int | None = None) -> None:
    """Seed Python, NumPy and torch (CPU runs with the same seed and thread count reproduce)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if threads is not None:
        torch.set_num_threads(threads)


def distributed_env() -> tuple[int, int, int]:
    """(world size, processes on this node, global rank) from torchrun's environment (1, 1, 0 without)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    return world, local, int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    return distributed_env()[2] == 0


def refuse_existing_run(run_dir: Path, resumable: bool = True) -> None:
    """A new run's directory must not hold a run (its config.json or a checkpoint) already. Only the main
    process checks: under DDP it writes config.json at the start, and a slower process must not mistake
    that for an earlier run (torchrun ends the others when one raises)."""
    if is_main_process() and ((Path(run_dir) / CONFIG_FILE).exists() or last_checkpoint(run_dir).exists()):
        hint = "choose another --out"
        if resumable:
            hint = f"pass --resume {run_dir} to continue it, or {hint}"
        raise UserError(f"{run_dir} already holds a run: {hint}")


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*does not have many workers.*", ".*`sync_dist=True`.*",
                    ".*Checkpoint directory.*exists.*",
                    ".*LeafSpec.*", ".*smaller than the logging interval.*",
                    ".*but have no logger configured.*", ".*`training_step` returned `None`.*",
                    ".*isinstance.*treespec.*"):
        warnings.filterwarnings("ignore", pattern)


def build_trainer(cfg: TrainConfig, run_dir: Path, run_config: dict[str, Any]):
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    _quiet_lightning()
    world, local, _ = distributed_env()
    kwargs: dict[str, Any] = {}
    if world > 1:  # launched by torchrun: one process per device, Lightning joins the group (gloo on CPU)
        kwargs.update(strategy="ddp", devices=local, num_nodes=world // local)
    else:
        devices = cfg.devices if cfg.devices == "auto" else int(cfg.devices)
        kwargs.update(devices=devices, num_nodes=cfg.num_nodes)
        if devices not in ("auto", 1):
            kwargs["strategy"] = "ddp"
    rundir_cb = RunDirectory(run_dir, run_config, cfg.log_every_n_steps)
    inside_run_dir(run_dir, CHECKPOINT_DIR)  # a symlinked folder would take writes (and removals) elsewhere
    callbacks: list[Any] = [
        rundir_cb,
        ModelCheckpoint(dirpath=run_dir / CHECKPOINT_DIR, filename="last", save_last=False, save_top_k=1,
                        monitor=None, every_n_epochs=1, save_on_train_epoch_end=True, enable_version_counter=False),
    ]
    if cfg.early_stopping_patience is not None:
        # strict=False: an epoch without a validation (a run stopped by max_steps or the time budget
        # before its first one) has no val_loss yet and is not a reason to stop or to crash
        callbacks.append(EarlyStopping(monitor="val_loss", patience=cfg.early_stopping_patience,
                                       min_delta=cfg.early_stopping_min_delta, check_on_train_epoch_end=True,
                                       strict=False))
    if cfg.diagnostics_every > 0:
        from rnnkit.training.diagnostics_callback import DIAGNOSTICS_DIR, DiagnosticsCallback

        callbacks.append(DiagnosticsCallback(cfg.diagnostics_every, inside_run_dir(run_dir, DIAGNOSTICS_DIR),
                                             plots=cfg.plots))
    if not cfg.quiet:
        from lightning.pytorch.callbacks import RichProgressBar

        callbacks.append(RichProgressBar(leave=True))
    logger: Any = False
    if cfg.tensorboard:
        try:
            import tensorboard  # noqa: F401
            from lightning.pytorch.loggers import TensorBoardLogger
            class _TensorBoard(TensorBoardLogger):
                def save(self) -> None:  # no hparams.yaml (written non-atomically): config.json has them
                    if self._experiment is not None:
                        self._experiment.flush()

            inside_run_dir(run_dir, "tensorboard")  # event files are appended to: no symlink out
            logger = _TensorBoard(save_dir=str(run_dir), name="tensorboard", version="", default_hp_metric=False)
        except ImportError:
            logger = False
    trainer = pl.Trainer(
        accelerator=cfg.accelerator,
        precision=cfg.precision,
        max_epochs=cfg.max_epochs,
        max_steps=cfg.max_steps,
        callbacks=callbacks,
        logger=logger,
        default_root_dir=str(run_dir),
        enable_progress_bar=not cfg.quiet,
        enable_model_summary=not cfg.quiet,
        log_every_n_steps=cfg.log_every_n_steps,
        check_val_every_n_epoch=cfg.val_every_n_epochs,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,  # SequenceTask.loader shards by (seed, epoch) itself
        plugins=[AtomicCheckpointIO(run_dir)],
        deterministic=False,
        **kwargs,
    )
    return trainer, rundir_cb


def fit(
    task: SequenceTask,
    run_dir: str | os.PathLike,
    run_config: dict[str, Any] | None = None,
    *,
    resume: bool = False,
    init_from: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Train ``task`` into ``run_dir``; returns the final metrics (also in ``metrics.json``).

    ``run_config`` is saved in ``config.json`` beside the model spec and ``"train"`` (the task's
    :class:`TrainConfig`). ``resume``: continue from ``run_dir/checkpoints/last.ckpt`` (a run
    directory without a checkpoint yet starts from scratch); only the options of
    ``resume_policy.RESUMABLE_TRAIN`` may differ from the run's config.json (applied, and recorded in
    its ``resumes`` history), and nothing is written before config.json and the checkpoint have been
    checked. ``init_from``: copy the weights of another run's ``model.safetensors`` before training
    (shapes must match). The run directory is locked for the call (``io/runlock.py``); a diverged or
    non-finite loss raises after writing ``metrics.json`` (``model.safetensors`` keeps the last epoch's).
    """
    run_dir = Path(run_dir)
    # one writer per run directory (io/runlock.py); DDP's other processes follow rank 0
    with run_lock(run_dir) if is_main_process() else contextlib.nullcontext():
        return _fit_locked(task, run_dir, run_config, resume, init_from)


def _fit_locked(task: SequenceTask, run_dir: Path, run_config: dict[str, Any] | None, resume: bool,
                init_from: str | os.PathLike | None) -> dict[str, Any]:
    cfg = task.cfg
    ckpt = last_checkpoint(run_dir)
    config_file = run_dir / CONFIG_FILE
    if not resume:
        refuse_existing_run(run_dir)
    if init_from is not None:
        source = Path(init_from) / WEIGHTS_FILE
        load_state_into(task.model, load_weights(source), str(source))
    run_config = {**(run_config or {}), "train": as_dict(cfg)}
    if init_from is not None:
        run_config["init_from"] = str(init_from)
    trainer, rundir_cb = build_trainer(cfg, run_dir, run_config)
    checkpoint_io = trainer.strategy.checkpoint_io
    # resume restores only what trusted_state rebuilds from the checkpoint (docs/security.md)
    checkpoint_io.trust = lambda ckpt, source: trusted_state(ckpt, task, trainer, source)
    ckpt_path: str | None = None
    if resume and config_file.exists():
        # read and check everything first: a refused resume leaves the run directory as it was
        saved = read_config(run_dir)
        changes = resume_changes(saved, run_config, str(config_file))
        step = epoch = None
        if ckpt.exists():
            checkpoint_io.preloaded = trusted_state(read_checkpoint(ckpt), task, trainer, str(ckpt),
                                                    lr_scale=lr_scale(changes))
            ckpt_path, step, epoch = str(ckpt), checkpoint_io.preloaded["global_step"], checkpoint_io.preloaded["epoch"]
        run_config = with_history(saved, run_config, changes, step, epoch, str(config_file))
        rundir_cb.run_config = run_config
    if resume and ckpt_path is None and not cfg.quiet and is_main_process():
        print(f"rnnkit: {run_dir} has no checkpoint yet: starting from the beginning")
    if is_main_process() and run_dir.is_dir():  # leftovers of atomic writes a kill interrupted
        # a new run's directory holds no config.json: a kill before it was written (a rerun with --out)
        # can only have left temporary files at the top (config.json, an app's tokenizer)
        for path in run_dir.rglob(".*.tmp") if resume else run_dir.glob(".*.tmp"):
            if is_temp_file(path):
                remove_in_run_dir(run_dir, path.absolute())
    if is_main_process():  # config.json first (milliseconds after the start): --resume needs it
        write_json_atomic(inside_run_dir(run_dir, CONFIG_FILE), {**run_config, "model": model_spec(task.model)})
    status = "completed"
    threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        trainer.fit(task, ckpt_path=ckpt_path)
    except (NonFiniteLoss, Diverged) as exc:
        if trainer.is_global_zero:
            # the weights stay those of the last epoch's end: model.safetensors = checkpoints/last.ckpt
            rundir_cb.write(trainer, task, status=exc.status, plots=False, weights=False,
                            error=str(exc), nonfinite_step=exc.step, nonfinite_epoch=exc.epoch)
        raise
    finally:
        torch.set_num_threads(threads)  # fit may run inside a larger program (tests, the demo)
    if trainer.interrupted:
        status = "interrupted"
    elif trainer.global_step == 0 and not resume:
        # e.g. a training set smaller than one batch (full batches only): nothing was learnt
        status = "no_steps"
        if trainer.is_global_zero:
            print(f"rnnkit: {run_dir} trained 0 steps (fewer training examples than one batch, or "
                          "max_steps/max_epochs 0): the model is its initialisation; lower --batch-size or "
                          "add data", file=sys.stderr)
    elif any(getattr(cb, "stopped_epoch", 0) for cb in trainer.callbacks if type(cb).__name__ == "EarlyStopping"):
        status = "early_stopped"
    if trainer.is_global_zero:
        rundir_cb.write(trainer, task, status=status, plots=cfg.plots)
    metrics = rundir_cb.metrics(trainer, task, status)
    return metrics


__all__ = ["CHECKPOINT_DIR", "LAST_CHECKPOINT", "build_trainer", "distributed_env", "fit", "is_main_process",
           "refuse_existing_run", "seed_everything"]
