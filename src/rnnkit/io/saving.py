"""``rnnkit.save(model, dir)`` / ``rnnkit.load(dir)``: config.json + model.safetensors, no pickle.

``config.json`` holds ``{"model": {"name", "module", "config", "dtype"}, ...}`` (a run directory adds
its training config beside ``"model"``); ``model.safetensors`` holds the ``state_dict``. Loading
parses JSON, looks the model name up in :mod:`rnnkit.io.registry`, builds the model from its config
and copies the tensors in: nothing is unpickled, whatever else lies in the directory. Every problem
with the files (missing, not JSON, not safetensors, truncated, wrong tensors) is a
:class:`CorruptRunFile` (a :class:`~rnnkit.errors.UserError`: one line, exit 2 in the CLI).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnkit._version import __version__
from rnnkit.errors import UserError
from rnnkit.io.atomic import write_bytes_atomic, write_json_atomic
from rnnkit.io.registry import build_model, model_config

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class CorruptRunFile(UserError):
    """A run directory's file is missing, unreadable or does not describe a loadable model."""


def _dtype_name(model: nn.Module) -> str | None:
    for p in model.parameters():
        if p.is_floating_point():
            return str(p.dtype).removeprefix("torch.")
    return None


def weights_bytes(model: nn.Module, metadata: dict[str, str] | None = None) -> bytes:
    """The model's ``state_dict`` as safetensors bytes (tied tensors stored once per name)."""
    from safetensors.torch import save

    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    return save(state, metadata={"format": "pt", **(metadata or {})})


def save_weights(model: nn.Module, path: str | os.PathLike) -> Path:
    return write_bytes_atomic(path, weights_bytes(model, {"rnnkit_version": __version__}))


def model_spec(model: nn.Module) -> dict[str, Any]:
    """What config.json's ``"model"`` entry holds for ``model``."""
    return {**model_config(model), "dtype": _dtype_name(model)}


def save(model: nn.Module, directory: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Write ``config.json`` (``{"model": ..., **extra}``) and ``model.safetensors`` into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {"rnnkit_version": __version__, "model": model_spec(model), **(extra or {})}
    save_weights(model, directory / WEIGHTS_FILE)
    write_json_atomic(directory / CONFIG_FILE, config)
    return directory


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """``directory/config.json`` parsed, or a one-line :class:`CorruptRunFile`."""
    path = Path(directory) / CONFIG_FILE
    if Path(directory).is_file():
        raise CorruptRunFile(f"{directory} is a file; expected a run directory holding {CONFIG_FILE}")
    if not path.exists():
        raise CorruptRunFile(f"{path} not found: is {directory} a run directory?")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptRunFile(f"{path} is not valid JSON ({_one_line(exc)}): the file is damaged") from exc
    if not isinstance(config, dict):
        raise CorruptRunFile(f"{path}: expected a JSON object, got {type(config).__name__}")
    return config


def read_app_config(directory: str | os.PathLike, app: str) -> dict[str, Any]:
    """:func:`read_config` of a run directory that ``app`` wrote, else a one-line error saying
    whose it is (the app name quoted short: the file is untrusted)."""
    if not (Path(directory) / CONFIG_FILE).exists():
        raise CorruptRunFile(f"{directory} is not a {app} run directory (no {CONFIG_FILE})")
    config = read_config(directory)
    if config.get("app") != app:
        raise CorruptRunFile(f"{directory} is not a {app} run (app {str(config.get('app'))[:40]!r})")
    return config


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file (never a pickle), or a one-line :class:`CorruptRunFile`."""
    from safetensors.torch import load

    path = Path(path)
    if not path.exists():
        raise CorruptRunFile(f"{path} not found")
    try:
        return load(path.read_bytes())
    except Exception as exc:  # safetensors raises SafetensorError / ValueError / OSError variants
        raise CorruptRunFile(f"{path} is not a readable safetensors file ({_one_line(exc)})") from exc


def load_state_into(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """Copy ``state`` into ``model``: every name and shape must match (one-line error otherwise)."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""))
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:5])}" + (" ..." if len(unexpected) > 5 else ""))
        raise CorruptRunFile(f"{source}: tensors do not match the model ({'; '.join(parts)})")
    for name, value in state.items():
        if tuple(value.shape) != tuple(own[name].shape):
            raise CorruptRunFile(
                f"{source}: tensor {name!r} has shape {tuple(value.shape)}, the model expects "
                f"{tuple(own[name].shape)}"
            )
    model.load_state_dict(state, strict=True)
    return model


def load(directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model saved in ``directory`` (a run directory or a :func:`save` directory).

    Reads only JSON and safetensors: no file in the directory is unpickled or executed. The model is
    returned in eval mode on ``map_location``.
    """
    directory = Path(directory)
    config = read_config(directory)
    source = str(directory / CONFIG_FILE)
    spec = config.get("model")
    if spec is None:
        raise CorruptRunFile(f"{source}: no 'model' entry (not written by rnnkit.save or a training run)")
    model = build_model(spec, source)
    state = load_weights(directory / WEIGHTS_FILE)
    dtype = _checked_dtype(spec.get("dtype"), state, source, directory / WEIGHTS_FILE)
    if dtype is not None:
        model = model.to(dtype)
    load_state_into(model, state, str(directory / WEIGHTS_FILE))
    return model.to(map_location).eval()


#: the floating dtypes a model may be saved in
DTYPES = ("float32", "float64", "float16", "bfloat16")


def _checked_dtype(name: Any, state: dict[str, torch.Tensor], source: str, weights: Path) -> torch.dtype | None:
    """config.json's ``model.dtype``: one of :data:`DTYPES` and the dtype the weights are stored in (an
    edited dtype would build a model whose inputs no command can feed)."""
    if name is None:
        return None
    if name not in DTYPES:
        raise CorruptRunFile(f"{source}: model.dtype = {str(name)[:40]!r} is not allowed: expected one of: "
                             f"{', '.join(DTYPES)}")
    stored = {str(t.dtype).removeprefix("torch.") for t in state.values() if t.is_floating_point()}
    if stored and stored != {name}:
        raise CorruptRunFile(f"{source}: model.dtype = {name!r} does not match {weights} "
                             f"({', '.join(sorted(stored))}): the file was edited or damaged")
    return getattr(torch, name)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
