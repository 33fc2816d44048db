"""Typed training configuration, and resolving it from defaults, a YAML/JSON file and flags.

Precedence: dataclass defaults < ``--config file.yaml`` < flags given on the command line. The
resolved config is saved in the run directory (``config.json``), which is also what ``--resume``
reads back. Unknown keys and values of the wrong type are :class:`~rnnkit.errors.UserError`\\ s that
name the file and the key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from rnnkit.errors import UserError

OPTIMIZERS = ("adam", "adamw", "sgd", "ntasgd")
SCHEDULES = ("constant", "cosine", "step", "exponential", "plateau")
NAN_POLICIES = ("stop", "skip")


@dataclass
class TrainConfig:
    """What every sequence task shares. ``batch_size`` is the *global* batch: under DDP each of the
    ``W`` processes takes ``batch_size / W`` rows, so a run reproduces with any process count."""

    max_epochs: int = 10
    max_steps: int = -1  # optimizer steps; -1: no limit
    batch_size: int = 32
    optimizer: str = "adam"  # adam | adamw | sgd | ntasgd (Merity et al. 2018)
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.0  # sgd
    ntasgd_patience: int = 5  # ntasgd: switch to averaged SGD after this many non-improving checks
    schedule: str = "constant"  # constant | cosine | step | exponential | plateau
    warmup_steps: int = 0  # linear warm-up (constant and cosine)
    step_size: int = 10  # step: epochs between decays
    gamma: float = 0.5  # step, exponential (per epoch), plateau (factor)
    plateau_patience: int = 2
    min_lr: float = 0.0
    clip_norm: float | None = None  # clip the global gradient norm to this
    clip_value: float | None = None  # clip every gradient element to [-v, v]
    tbptt_steps: int | None = None  # truncated BPTT: cut the gradient every k time steps
    nan_policy: str = "stop"  # stop | skip: what a non-finite loss or gradient does
    nan_max_skips: int = 10  # skip: stop after this many consecutive skipped steps
    early_stopping_patience: int | None = None  # validation checks without improvement
    early_stopping_min_delta: float = 0.0
    seed: int = 0
    threads: int | None = None  # torch CPU threads per process
    accelerator: str = "auto"  # auto | cpu | gpu
    devices: str = "auto"  # processes per node (under torchrun: taken from the environment)
    num_nodes: int = 1
    precision: str = "32-true"
    quiet: bool = False
    tensorboard: bool = True
    log_every_n_steps: int = 10
    val_every_n_epochs: int = 1
    plots: bool = True
    diagnostics_every: int = 0  # record gradient-flow diagnostics every N optimiser steps (0: off)

    def validate(self) -> TrainConfig:
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("nan_policy", self.nan_policy, NAN_POLICIES)
        for name in ("max_epochs", "batch_size", "log_every_n_steps", "val_every_n_epochs", "num_nodes",
                     "ntasgd_patience", "step_size", "nan_max_skips"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise UserError(f"lr must be positive, got {self.lr}")
        if self.clip_norm is not None and self.clip_value is not None:
            raise UserError("clip_norm and clip_value are exclusive: choose one way to clip gradients")
        for name in ("clip_norm", "clip_value"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise UserError(f"{name} must be positive, got {v}")
        if self.tbptt_steps is not None and self.tbptt_steps < 1:
            raise UserError(f"tbptt_steps must be at least 1, got {self.tbptt_steps}")
        if self.optimizer == "ntasgd" and self.schedule != "constant":
            raise UserError("ntasgd controls its own learning rate: use schedule 'constant'")
        if self.threads is not None and self.threads < 1:
            raise UserError(f"threads must be at least 1, got {self.threads}")
        return self


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")


C = TypeVar("C")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML (or JSON) mapping from ``path``; one-line errors for missing or malformed files."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"config file {path} is not valid YAML: {first}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path}: expected a mapping of option: value, got {type(data).__name__}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _coerce(cls_name: str, name: str, hint: Any, value: Any, source: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        hint = args[0]
    if value is None:
        raise UserError(f"{source}: {name} cannot be null")
    if hint is float and isinstance(value, str):
        with contextlib.suppress(ValueError):  # YAML 1.1 reads 1e-4 (no dot) as a string
            value = float(value)
    ok = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        str: lambda v: isinstance(v, (str, int)) and not isinstance(v, bool),
    }.get(hint)
    if ok is not None and not ok(value):
        raise UserError(f"{source}: {name} must be {hint.__name__}, got {value!r}")
    return hint(value) if hint in (float, str) else value


def resolve(cls: type[C], *layers: tuple[str, dict[str, Any]]) -> C:
    """A ``cls`` instance from its defaults and ``(source, mapping)`` layers, later ones winning.

    Keys that are not fields of ``cls`` are an error naming the source; ``None`` values in a layer
    mean "not given" only for flag layers (sources starting with ``--``).
    """
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    values: dict[str, Any] = {}
    for source, mapping in layers:
        label = "the command line" if source == "--" else source
        for key, value in mapping.items():
            if key not in known:
                close = [k for k in known if k.startswith(key[:3])]
                hint = f" (did you mean {', '.join(sorted(close))}?)" if close else ""
                raise UserError(f"{label}: unknown option {key!r}{hint}")
            if value is None and source.startswith("--"):
                continue
            values[key] = _coerce(cls.__name__, key, hints[key], value, label)
    obj = cls(**values)
    validate = getattr(obj, "validate", None)
    return validate() if callable(validate) else obj


def split_layers(cls: type, mapping: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a mapping into the keys that are fields of ``cls`` and the rest."""
    known = {f.name for f in fields(cls)}
    return ({k: v for k, v in mapping.items() if k in known}, {k: v for k, v in mapping.items() if k not in known})


def as_dict(obj: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(obj)))
