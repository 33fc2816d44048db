"""What ``--resume`` takes from ``checkpoints/last.ckpt``: rnnkit's own state schema, checked field by field.

A checkpoint is untrusted input (run directories are shared). ``torch.load(weights_only=True)`` keeps
pickle code out, but the *values* are still the file's: Lightning's ModelCheckpoint state, for one,
names files that Lightning deletes later. So resume never hands the file to Lightning as it is:
:func:`read_checkpoint` loads it, :func:`trusted_state` builds a new dictionary holding only

- ``state_dict``: the task's tensors, every name and shape as the model built from the config;
- ``optimizer_states`` / ``lr_schedulers``: compared with a freshly built optimiser and schedule of
  the same config (same keys, same types; per-parameter tensors of the parameter's shape);
- ``loops``, ``epoch``, ``global_step``: the same structure as the trainer's own, non-negative counters;
- ``callbacks``: the RunDirectory log (known columns, numbers) and EarlyStopping's counters (its
  patience comes from the config); ModelCheckpoint's state (paths) is dropped: it starts afresh with
  its directory inside the run directory;
- ``rnnkit``: the task's extras (validation history, NT-ASGD switch, skipped steps, the ``ema_decay``
  averages: a step count and a tensor of each trained parameter's shape) and, for a task
  whose recurrent state flows from one epoch into the next (``SequenceTask.epoch_carry``: the text
  app's stream), that state: one per process, each of the structure and shapes of
  ``task.carry_template``; one saved by another number of processes is dropped (the stream goes on
  from zeros).

RNG state is not stored: every epoch reseeds from (seed, epoch, rank). Anything else, or anything
malformed, is a one-line :class:`~rnnkit.io.saving.CorruptRunFile` that names the field, never its
content.
"""

from __future__ import annotations

import math
import os
from enum import Enum
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from rnnkit.io.saving import CorruptRunFile
from rnnkit.training.optim import build_optimizer, build_scheduler

#: keys of the checkpoint dictionary that rnnkit reads; every other key is refused
KNOWN_KEYS = frozenset({"epoch", "global_step", "pytorch-lightning_version", "state_dict", "loops", "callbacks",
                        "optimizer_states", "lr_schedulers", "rnnkit", "MixedPrecision"})
#: per-parameter optimiser state rnnkit's optimisers keep (build_optimizer)
OPTIMIZER_STATE_KEYS = {
    "Adam": {"step", "exp_avg", "exp_avg_sq"},
    "AdamW": {"step", "exp_avg", "exp_avg_sq"},
    "SGD": {"momentum_buffer"},
    "ASGD": {"step", "eta", "mu", "ax"},
}
LOG_COLUMNS = frozenset({"epoch", "step", "train_loss", "val_loss", "lr", "epoch_end"})
MAX_DEPTH = 12
#: the most processes whose carried states a checkpoint may hold
MAX_PROCESSES = 4096


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` on the CPU, or a one-line :class:`CorruptRunFile`."""
    path = Path(path)
    if not path.is_file():
        raise CorruptRunFile(f"{path} not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors, truncation, zip errors: never echo the file's bytes
        raise CorruptRunFile(f"{path} is not a readable checkpoint ({type(exc).__name__}): "
                             "the file is damaged or was not written by rnnkit") from exc
    if not isinstance(ckpt, dict):
        raise CorruptRunFile(f"{path}: expected a checkpoint dictionary, got {type(ckpt).__name__}")
    return ckpt


class _Checker:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, what: str) -> CorruptRunFile:
        return CorruptRunFile(f"{self.source}: {where} {what}: the checkpoint is damaged or was not written "
                              "by this rnnkit; start the run again with --out")

    def dict(self, value: Any, where: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(where, f"must be a dictionary, got {type(value).__name__}")
        return value

    def int(self, value: Any, where: str, minimum: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(where, f"must be an integer of at least {minimum}")
        return value

    def number(self, value: Any, where: str, finite: bool = False) -> float | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(where, f"must be a number, got {type(value).__name__}")
        if finite and not math.isfinite(value):
            raise self.fail(where, "must be finite")
        return value

    def tensor(self, value: Any, like: Tensor, where: str) -> Tensor:
        if (not isinstance(value, Tensor) or value.shape != like.shape
                or value.is_floating_point() != like.is_floating_point()):
            raise self.fail(where, f"must be a tensor of shape {tuple(like.shape)}")
        return value

    def conform(self, value: Any, template: Any, where: str, depth: int = 0) -> Any:
        """``value`` rebuilt after ``template`` (what this rnnkit writes): same keys, lengths and types;
        strings must equal the template's (they are configuration, e.g. a schedule's mode)."""
        if depth > MAX_DEPTH:
            raise self.fail(where, "is nested too deeply")
        if isinstance(template, dict):
            value = self.dict(value, where)
            if set(value) != set(template):
                extra = sorted(repr(str(k)[:40]) for k in set(value) - set(template))
                missing = sorted(repr(str(k)) for k in set(template) - set(value))
                detail = f"unknown keys {', '.join(extra[:3])}" if extra else f"missing keys {', '.join(missing[:3])}"
                raise self.fail(where, f"has {detail}")
            return {k: self.conform(value[k], template[k], f"{where}.{k}", depth + 1) for k in template}
        if isinstance(template, (list, tuple)):
            if not isinstance(value, (list, tuple)) or len(value) != len(template):
                raise self.fail(where, f"must be a list of {len(template)} entries")
            out = [self.conform(v, t, f"{where}[{i}]", depth + 1)
                   for i, (v, t) in enumerate(zip(value, template, strict=True))]
            return type(template)(out)
        if isinstance(template, Tensor):
            return self.tensor(value, template, where)
        if template is None or isinstance(template, bool):
            if type(value) is not type(template):
                raise self.fail(where, f"must be {'null' if template is None else 'a boolean'}")
            return value
        if isinstance(template, int):
            return self.int(value, where, minimum=-(2**62))
        if isinstance(template, float):
            return self.number(value, where)
        if isinstance(template, str):
            if value != template:
                raise self.fail(where, "differs from this run's configuration")
            return value
        raise self.fail(where, f"has a type rnnkit does not write ({type(template).__name__})")


def trusted_state(ckpt: Any, task: Any, trainer: Any, source: str, lr_scale: float = 1.0) -> dict[str, Any]:
    """The parts of ``ckpt`` rnnkit restores, each checked against ``task`` (a SequenceTask) and
    ``trainer`` (the Lightning Trainer about to resume); see the module docstring.

    ``lr_scale``: every learning rate of the optimiser and schedule state is multiplied by it (a resume
    with another ``lr``: the schedule continues where it was, from the new base rate)."""
    c = _Checker(source)
    ckpt = c.dict(ckpt, "the checkpoint")
    unknown = sorted(str(k) for k in set(ckpt) - KNOWN_KEYS)
    if unknown:
        names = ", ".join(repr(k[:40]) for k in unknown[:3])
        raise c.fail("the checkpoint", f"has keys rnnkit does not write ({names})")
    for key in ("epoch", "global_step", "state_dict", "loops", "optimizer_states", "lr_schedulers"):
        if key not in ckpt:
            raise c.fail("the checkpoint", f"has no {key!r}")
    out: dict[str, Any] = {
        "epoch": c.int(ckpt["epoch"], "epoch"),
        "global_step": c.int(ckpt["global_step"], "global_step"),
        "state_dict": _model_state(c, ckpt["state_dict"], task),
        "loops": _loops(c, ckpt["loops"], trainer),
    }
    version = ckpt.get("pytorch-lightning_version")
    if version is not None:
        if not isinstance(version, str) or len(version) > 40:
            raise c.fail("pytorch-lightning_version", "must be a short string")
        out["pytorch-lightning_version"] = version
    extras = _extras(c, ckpt.get("rnnkit", {}), task, trainer)
    out["rnnkit"] = extras
    out["optimizer_states"], out["lr_schedulers"] = _optimizer(c, ckpt, task, extras["ntasgd_switched"])
    if lr_scale != 1.0:
        _scale_lr(out["optimizer_states"][0], out["lr_schedulers"][0], lr_scale)
    out["callbacks"] = _callbacks(c, ckpt.get("callbacks", {}), trainer, task)
    if "MixedPrecision" in ckpt:  # a gradient scaler's counters (precision 16-mixed)
        scaler = c.dict(ckpt["MixedPrecision"], "MixedPrecision")
        out["MixedPrecision"] = {str(k): c.number(v, f"MixedPrecision.{k}") for k, v in scaler.items()
                                 if isinstance(k, str) and len(k) < 40}
    return out


def _model_state(c: _Checker, state: Any, task: Any) -> dict[str, Tensor]:
    state = c.dict(state, "state_dict")
    own = task.state_dict()
    if set(state) != set(own):
        raise c.fail("state_dict", "does not hold the tensors of the model in config.json")
    for name, ref in own.items():
        c.tensor(state[name], ref, f"state_dict[{name!r}]")
    return {name: state[name] for name in own}


def _loops(c: _Checker, loops: Any, trainer: Any) -> dict[str, Any]:
    loops = c.dict(loops, "loops")
    template = {"fit_loop": trainer.fit_loop.state_dict(), "validate_loop": trainer.validate_loop.state_dict(),
                "test_loop": trainer.test_loop.state_dict(), "predict_loop": trainer.predict_loop.state_dict()}
    out = c.conform(loops, template, "loops")
    _non_negative(c, out, "loops")
    return out


def _non_negative(c: _Checker, value: Any, where: str) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _non_negative(c, v, f"{where}.{k}")
    elif isinstance(value, int) and not isinstance(value, bool) and value < 0:
        raise c.fail(where, "must not be negative")


def _extras(c: _Checker, extra: Any, task: Any, trainer: Any) -> dict[str, Any]:
    extra = c.dict(extra, "rnnkit")
    if set(extra) - {"val_history", "ntasgd_switched", "skipped_steps", "carry", "ema"}:
        raise c.fail("rnnkit", "has unknown keys")
    history = extra.get("val_history", [])
    if not isinstance(history, list):
        raise c.fail("rnnkit.val_history", "must be a list of numbers")
    switched = extra.get("ntasgd_switched", False)
    if not isinstance(switched, bool):
        raise c.fail("rnnkit.ntasgd_switched", "must be a boolean")
    return {"val_history": [float(c.number(v, "rnnkit.val_history[]")) for v in history],
            "ntasgd_switched": switched,
            "skipped_steps": c.int(extra.get("skipped_steps", 0), "rnnkit.skipped_steps"),
            "carry": _carry(c, extra.get("carry"), task, trainer),
            **({"ema": _weight_average(c, extra["ema"], task)} if "ema" in extra else {})}


def _weight_average(c: _Checker, ema: Any, task: Any) -> dict[str, Any]:
    """``ema_decay``'s averages: a step count and one float tensor shaped like each trained parameter."""
    if not task.cfg.ema_decay:
        raise c.fail("rnnkit.ema", "holds weight averages, but this run's ema_decay is 0")
    ema = c.dict(ema, "rnnkit.ema")
    if set(ema) != {"steps", "shadows"}:
        raise c.fail("rnnkit.ema", "must hold exactly 'steps' and 'shadows'")
    params = task._params()  # the parameters the average follows (SequenceTask.weight_average)
    shadows = ema["shadows"]
    if not isinstance(shadows, list) or len(shadows) != len(params):
        raise c.fail("rnnkit.ema.shadows", f"must be a list of {len(params)} tensors, one per parameter")
    return {"steps": c.int(ema["steps"], "rnnkit.ema.steps"),
            "shadows": [c.tensor(t, p, f"rnnkit.ema.shadows[{i}]").to(p.dtype)
                        for i, (t, p) in enumerate(zip(shadows, params, strict=True))]}


def _carry(c: _Checker, carry: Any, task: Any, trainer: Any) -> list[Any] | None:
    """The recurrent state of every process at the checkpoint's epoch end (``SequenceTask.epoch_carry``)."""
    if carry is None:
        return None
    if not getattr(task, "epoch_carry", False):
        raise c.fail("rnnkit.carry", "is a recurrent state this task does not carry between epochs")
    if not isinstance(carry, list) or not 1 <= len(carry) <= MAX_PROCESSES:
        raise c.fail("rnnkit.carry", f"must be a list of 1 to {MAX_PROCESSES} states, one per process")
    world = trainer.world_size
    if len(carry) != world:  # saved by another number of processes: its rows do not map onto ours
        return None
    template = task.carry_template(task.cfg.batch_size // world)
    return [c.conform(state, template, f"rnnkit.carry[{r}]") for r, state in enumerate(carry)]


def _optimizer(c: _Checker, ckpt: dict[str, Any], task: Any, switched: bool) -> tuple[list, list]:
    """The optimiser and scheduler states, after a fresh optimiser and schedule of the same config."""
    params = [p for p in task.model.parameters() if p.requires_grad]
    opt = build_optimizer(params, task.cfg, averaged=switched)
    sched = build_scheduler(opt, task.cfg, 1, time_progress=task.budget_progress)
    states, scheds = ckpt["optimizer_states"], ckpt["lr_schedulers"]
    if not isinstance(states, list) or len(states) != 1:
        raise c.fail("optimizer_states", "must hold one optimiser (this run's configuration has one)")
    if not isinstance(scheds, list) or len(scheds) != 1:
        raise c.fail("lr_schedulers", "must hold one schedule (this run's configuration has one)")
    state = c.dict(states[0], "optimizer_states[0]")
    if set(state) != {"state", "param_groups"}:
        raise c.fail("optimizer_states[0]", "must have exactly 'state' and 'param_groups'")
    ref_groups = opt.state_dict()["param_groups"]
    groups = c.conform(state["param_groups"], ref_groups, "optimizer_states[0].param_groups")
    for g in groups:
        for key in ("lr", "initial_lr"):
            if key in g and not (math.isfinite(g[key]) and g[key] >= 0):
                raise c.fail(f"optimizer_states[0].param_groups.{key}", "must be finite and non-negative")
    per_param = c.dict(state["state"], "optimizer_states[0].state")
    keys = OPTIMIZER_STATE_KEYS[type(opt).__name__]
    clean: dict[int, dict[str, Any]] = {}
    for index, entry in per_param.items():
        where = f"optimizer_states[0].state[{index!r}]"
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(params):
            raise c.fail("optimizer_states[0].state", f"names a parameter index outside 0..{len(params) - 1}")
        entry = c.dict(entry, where)
        if set(entry) != keys:
            raise c.fail(where, f"must have the keys {sorted(keys)}")
        shape = params[index].shape
        for key, value in entry.items():
            if value is None and key == "momentum_buffer":
                continue
            if not isinstance(value, Tensor) or not value.is_floating_point():
                raise c.fail(f"{where}.{key}", "must be a floating-point tensor")
            if value.shape != shape and value.numel() != 1:
                raise c.fail(f"{where}.{key}", f"must have the parameter's shape {tuple(shape)} or be a scalar")
        clean[index] = dict(entry)
    sched_state = c.conform(scheds[0], sched.state_dict(), "lr_schedulers[0]")
    return [{"state": clean, "param_groups": groups}], [sched_state]


def _scale_lr(opt_state: dict[str, Any], sched_state: dict[str, Any], scale: float) -> None:
    """Multiply the (validated) learning rates in place: the groups' current and initial rates, the
    schedule's base and last rates, ASGD's per-parameter step size ``eta``."""
    for group in opt_state["param_groups"]:
        for key in ("lr", "initial_lr"):
            if key in group:
                group[key] = group[key] * scale
    for entry in opt_state["state"].values():
        if isinstance(entry.get("eta"), Tensor):
            entry["eta"] = entry["eta"] * scale
    for key in ("base_lrs", "_last_lr"):
        if isinstance(sched_state.get(key), list):
            sched_state[key] = [v * scale for v in sched_state[key]]


def _callbacks(c: _Checker, callbacks: Any, trainer: Any, task: Any) -> dict[str, Any]:
    """RunDirectory's log and EarlyStopping's counters; ModelCheckpoint's state (paths) is dropped."""
    callbacks = c.dict(callbacks, "callbacks")
    ours = {type(cb).__name__: cb for cb in trainer.callbacks}
    out: dict[str, Any] = {}
    for key, state in callbacks.items():
        name = key.split("{", 1)[0] if isinstance(key, str) else ""
        if name == "ModelCheckpoint":
            continue  # names files Lightning would later delete: never taken from the file
        if name == "RunDirectory":
            out[key] = _run_directory(c, state)
        elif name == "EarlyStopping":
            cb = ours.get("EarlyStopping")
            if cb is None or key != cb.state_key:
                continue  # early stopping is off in this run, or monitors something else
            out[key] = _early_stopping(c, state, cb)
        else:
            raise c.fail("callbacks", f"holds state of a callback rnnkit does not use ({name[:40]!r})")
    return out


def _run_directory(c: _Checker, state: Any) -> dict[str, Any]:
    state = c.dict(state, "callbacks.RunDirectory")
    rows = state.get("rows", [])
    if not isinstance(rows, list):
        raise c.fail("callbacks.RunDirectory.rows", "must be a list")
    clean_rows = []
    for i, row in enumerate(rows):
        row = c.dict(row, f"callbacks.RunDirectory.rows[{i}]")
        if not set(row) <= LOG_COLUMNS:
            raise c.fail(f"callbacks.RunDirectory.rows[{i}]", "has unknown columns")
        for k, v in row.items():
            if v is not None:
                c.number(v, f"callbacks.RunDirectory.rows[{i}].{k}")
        clean_rows.append(dict(row))
    best = c.dict(state.get("best", {}), "callbacks.RunDirectory.best")
    if best:
        if set(best) != {"metric", "value", "epoch", "step"} or best["metric"] not in ("val_loss", "train_loss"):
            raise c.fail("callbacks.RunDirectory.best", "is malformed")
        best = {"metric": best["metric"], "value": c.number(best["value"], "callbacks.RunDirectory.best.value"),
                "epoch": c.int(best["epoch"], "callbacks.RunDirectory.best.epoch"),
                "step": c.int(best["step"], "callbacks.RunDirectory.best.step")}
    elapsed = c.number(state.get("elapsed", 0.0), "callbacks.RunDirectory.elapsed", finite=True)
    if elapsed < 0:
        raise c.fail("callbacks.RunDirectory.elapsed", "must not be negative")
    return {"rows": clean_rows, "best": best, "elapsed": float(elapsed)}


def _early_stopping(c: _Checker, state: Any, cb: Any) -> dict[str, Any]:
    where = "callbacks.EarlyStopping"
    state = c.dict(state, where)
    best = state.get("best_score")
    if not isinstance(best, Tensor) or best.numel() != 1 or not best.is_floating_point():
        raise c.fail(f"{where}.best_score", "must be a scalar tensor")
    reason = c.int(state.get("stopping_reason", 0), f"{where}.stopping_reason")
    reasons = type(getattr(cb, "stopping_reason", 0))
    if isinstance(getattr(cb, "stopping_reason", None), Enum) and reason not in {r.value for r in reasons}:
        raise c.fail(f"{where}.stopping_reason", "is not a known reason")
    message = state.get("stopping_reason_message")
    if message is not None and (not isinstance(message, str) or len(message) > 1000):
        raise c.fail(f"{where}.stopping_reason_message", "must be a short string or null")
    fresh = cb.state_dict()
    return {"wait_count": c.int(state.get("wait_count"), f"{where}.wait_count"),
            "stopped_epoch": c.int(state.get("stopped_epoch"), f"{where}.stopped_epoch"),
            "best_score": best.reshape(fresh["best_score"].shape),
            "patience": fresh["patience"],  # the configuration's, not the file's
            "stopping_reason": reason,
            "stopping_reason_message": message}
