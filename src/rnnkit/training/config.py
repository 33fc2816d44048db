"""Typed training configuration, and resolving it from defaults, a YAML/JSON file and flags.

Precedence: dataclass defaults < ``--config file.yaml`` < flags given on the command line. The
resolved config is saved in the run directory (``config.json``), which is also what ``--resume``
reads back. Unknown keys and values of the wrong type are :class:`~rnnkit.errors.UserError`\\ s that
name the file and the key.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from rnnkit.errors import UserError
from rnnkit.validation import check_fields, check_mapping, opt

OPTIMIZERS = ("adam", "adamw", "sgd", "ntasgd")
SCHEDULES = ("constant", "cosine", "step", "exponential", "plateau")
NAN_POLICIES = ("stop", "skip")


#: Lightning's precision names (``32`` etc. are read as the ``-true``/``-mixed`` names Lightning maps them to)
PRECISIONS = ("32-true", "64-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true")
PRECISION_ALIASES = {"32": "32-true", "64": "64-true", "16": "16-mixed", "bf16": "bf16-mixed"}
ACCELERATORS = ("auto", "cpu", "gpu")


def _devices(value: str) -> str | None:
    if value == "auto" or (value.isdigit() and 1 <= int(value) <= 1024):
        return None
    return "auto or a number of devices from 1 to 1024"


def _precision(value: str) -> str | None:
    return None if PRECISION_ALIASES.get(value, value) in PRECISIONS else "one of: " + ", ".join(PRECISIONS)


@dataclass
class TrainConfig:
    """What every sequence task shares. ``batch_size`` is the *global* batch: under DDP each of the
    ``W`` processes takes ``batch_size / W`` rows, so a run reproduces with any process count.

    Each field's ``opt`` says what it allows (rnnkit.validation); :meth:`validate` adds the checks
    that involve several fields or the machine."""

    max_epochs: int = opt(10, min=1, help="epochs to train at most")
    max_steps: int = opt(-1, min=1, special=(-1,), help="optimizer steps; -1: no limit")
    batch_size: int = opt(32, min=1, help="global batch (split across processes)")
    optimizer: str = opt("adam", choices=OPTIMIZERS, help="ntasgd: Merity et al. 2018's averaged SGD")
    lr: float = opt(1e-3, gt=0, help="learning rate")
    weight_decay: float = opt(0.0, min=0)
    momentum: float = opt(0.0, min=0, lt=1, help="sgd")
    ntasgd_patience: int = opt(5, min=1, help="ntasgd: switch to averaged SGD after this many non-improving checks")
    schedule: str = opt("constant", choices=SCHEDULES, help="learning-rate schedule")
    warmup_steps: int = opt(0, min=0, help="linear warm-up (constant and cosine)")
    step_size: int = opt(10, min=1, help="step: epochs between decays")
    gamma: float = opt(0.5, gt=0, max=1, help="step, exponential (per epoch), plateau (factor, < 1)")
    plateau_patience: int = opt(2, min=0)
    min_lr: float = opt(0.0, min=0)
    ema_decay: float = opt(0.0, min=0, lt=1, help="keep an exponential moving average of the weights with "
                           "this decay per step (e.g. 0.999; 0: off): validation and the saved model use it")
    clip_norm: float | None = opt(None, gt=0, help="clip the global gradient norm to this")
    clip_value: float | None = opt(None, gt=0, help="clip every gradient element to [-v, v]")
    tbptt_steps: int | None = opt(None, min=1, help="truncated BPTT: cut the gradient every k time steps")
    nan_policy: str = opt("stop", choices=NAN_POLICIES, help="what a non-finite loss or gradient does")
    nan_max_skips: int = opt(10, min=1, help="skip: stop after this many consecutive skipped steps")
    early_stopping_patience: int | None = opt(None, min=0, help="validation checks without improvement")
    early_stopping_min_delta: float = opt(0.0, min=0)
    seed: int = opt(0, min=0, help="seed of the weights, the data order and dropout")
    threads: int | None = opt(None, min=1, max=1024, help="torch CPU threads per process")
    accelerator: str = opt("auto", choices=ACCELERATORS)
    devices: str = opt("auto", check=_devices, allowed="auto or a number of devices from 1 to 1024",
                       help="processes per node (under torchrun: taken from the environment)")
    num_nodes: int = opt(1, min=1, max=1024)
    precision: str = opt("32-true", check=_precision, allowed="one of: " + ", ".join(PRECISIONS))
    quiet: bool = opt(False)
    tensorboard: bool = opt(True, help="write TensorBoard event files")
    log_every_n_steps: int = opt(10, min=1)
    val_every_n_epochs: int = opt(1, min=1)
    plots: bool = opt(True)
    diagnostics_every: int = opt(0, min=0, help="record gradient-flow diagnostics every N optimiser steps (0: off)")

    def validate(self) -> TrainConfig:
        check_fields(self)
        self.precision = PRECISION_ALIASES.get(self.precision, self.precision)
        if self.clip_norm is not None and self.clip_value is not None:
            raise UserError("clip_norm and clip_value are exclusive: choose one way to clip gradients")
        if self.optimizer == "ntasgd" and self.ema_decay:
            raise UserError("ntasgd averages the weights itself: use ema_decay 0 with it")
        if self.optimizer == "ntasgd" and self.schedule != "constant":
            raise UserError("ntasgd controls its own learning rate: use schedule 'constant'")
        if self.schedule == "plateau" and self.gamma >= 1:
            raise UserError(f"gamma = {self.gamma} is not allowed with schedule plateau: expected a factor < 1")
        self._check_machine()
        return self

    def _check_machine(self) -> None:
        """The accelerator and devices asked for exist here (Lightning would raise a traceback)."""
        if self.accelerator != "gpu":
            return
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if self.accelerator == "gpu" and gpus == 0:
            raise UserError("accelerator = 'gpu' is not allowed here: this machine has no GPU that torch can use; "
                            "expected cpu or auto")
        wanted = 1 if self.devices == "auto" else int(self.devices)
        if self.accelerator == "gpu" and wanted > gpus:
            raise UserError(f"devices = {wanted} is not allowed: this machine has {gpus} GPU(s)")


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


def resolve(cls: type[C], *layers: tuple[str, dict[str, Any]]) -> C:
    """A ``cls`` instance from its defaults and ``(source, mapping)`` layers, later ones winning.

    Every key and value goes through ``rnnkit.validation.check_mapping`` (typed, range-checked, unknown
    keys refused with the source named); ``None`` values in a layer mean "not given" only for flag
    layers (sources starting with ``--``). Cross-field checks: the class's ``validate()``.
    """
    values: dict[str, Any] = {}
    for source, mapping in layers:
        label = "the command line" if source.startswith("--") else source
        values.update(check_mapping(cls, mapping, label, skip_none=source.startswith("--")))
    obj = cls(**values)
    validate = getattr(obj, "validate", None)
    return validate() if callable(validate) else obj


def split_layers(cls: type, mapping: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a mapping into the keys that are fields of ``cls`` and the rest."""
    known = {f.name for f in fields(cls)}
    return ({k: v for k, v in mapping.items() if k in known}, {k: v for k, v in mapping.items() if k not in known})


def as_dict(obj: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(obj)))
