"""What every app's ``train`` command shares: the training flags, config resolution, the run.

An app's command declares its own task options; the shared training flags come from
:func:`rnnkit.cli_options.training_flags`. It gathers what was given with :func:`command_flags`, calls
:func:`resolve_run` to merge defaults < the resumed run's config.json < ``--config`` file < flags, and
:func:`print_result` at the end. No Lightning import here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rnnkit.errors import UserError
from rnnkit.training.config import TrainConfig, read_config_file, resolve, split_layers
from rnnkit.validation.checks import unknown_option


def parse_set(items: list[str] | None) -> dict[str, object]:
    """``--set key=value`` options (values parsed as YAML scalars) as a mapping; ``-`` in keys as ``_``."""
    import yaml

    out: dict[str, object] = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key.strip().replace("-", "_")] = yaml.safe_load(value)
        except yaml.YAMLError:  # `--set x=[`: the value is not a YAML scalar; take it as text
            out[key.strip().replace("-", "_")] = value
    return out


def command_flags(params: dict[str, Any], rename: dict[str, str] | None = None) -> dict[str, Any]:
    """A ``train`` command's parameters as option values: its own (renamed to the config's field names,
    paths as text), then the shared training flags (``training``), then ``--set`` (which wins);
    ``quiet`` only when given."""
    params = dict(params)
    sets, quiet, training = params.pop("set_", None), params.pop("quiet", False), params.pop("training", None)
    names = rename or {}
    flags = {names.get(k, k): (str(v) if isinstance(v, Path) else v) for k, v in params.items()}
    flags["quiet"] = True if quiet else None
    return {**flags, **(training or {}), **parse_set(sets)}


def resolve_run(
    task_cls: type,
    flags: dict[str, Any],
    config_file: Path | None = None,
    resume: Path | None = None,
) -> tuple[TrainConfig, Any]:
    """(TrainConfig, task config) from defaults < resumed run < config file < flags.

    ``flags`` maps field names to values, ``None`` for flags not given. Keys of the config file
    and flags go to whichever of the two dataclasses has that field.
    """
    layers: list[tuple[str, dict[str, Any]]] = []
    if resume is not None:
        from rnnkit.validation.run_config import read_run_config

        if Path(resume).is_dir() and not (Path(resume) / "config.json").exists():
            raise UserError(f"{resume} has no config.json: the run was interrupted before it started; "
                            f"start it again with --out {resume}")
        saved = read_run_config(resume)
        layers.append((str(Path(resume) / "config.json"), {**saved.get("train", {}), **saved["task"]}))
    if config_file is not None:
        layers.append((str(config_file), read_config_file(config_file)))
    layers.append(("--", flags))
    return resolve_layers(task_cls, layers)


def resumed_layer(run_dir: Path, app: str) -> tuple[str, dict]:
    """The resumed run's options as a ``resolve_layers`` layer, for an app whose own defaults come first
    (its config.json read through the validation layer, for ``app``'s runs only)."""
    from rnnkit.validation.run_config import read_run_config

    if not Path(run_dir).is_dir():
        raise UserError(f"run directory {run_dir} not found")
    if not (Path(run_dir) / "config.json").exists():
        raise UserError(f"{run_dir} has no config.json: the run was interrupted before it started; "
                        f"start it again with --out {run_dir}")
    saved = read_run_config(run_dir, app)
    return str(Path(run_dir) / "config.json"), {**saved.get("train", {}), **saved["task"]}


def resolve_app_run(app: str, defaults: dict[str, Any], task_cls: type, flags: dict[str, Any],
                    config_file: Path | None = None, resume: Path | None = None) -> tuple[TrainConfig, Any]:
    """(TrainConfig, task config) of an app's train command (and of its Python API's ``fit``): the
    app's defaults < the resumed run's (``resume``) < the config file < ``flags`` (None: not given)."""
    layers: list[tuple[str, dict[str, Any]]] = [(f"{app} defaults", dict(defaults))]
    if resume is not None:
        layers.append(resumed_layer(resume, app))
    if config_file is not None:
        layers.append((str(config_file), read_config_file(config_file)))
    layers.append(("--", flags))
    return resolve_layers(task_cls, layers)


def training_aliases() -> dict[str, str]:
    """The training flags whose name is not their field's (``epochs`` -> ``max_epochs``): config files,
    ``--set`` and the Python APIs take either name, as the command line takes the flag."""
    from rnnkit.cli_options import TRAINING_FLAGS

    return {flag: field for flag, field in TRAINING_FLAGS.items() if flag != field}


def with_aliases_resolved(mapping: dict[str, Any], source: str) -> dict[str, Any]:
    """``mapping`` with every alias key renamed to its field (both in one source: refused)."""
    out = dict(mapping)
    for alias, field in training_aliases().items():
        if alias in out:
            if field in out:
                raise UserError(f"{source}: {alias} and {field} are one option; give one of them")
            out[field] = out.pop(alias)
    return out


def option_names(task_cls: type) -> set[str]:
    """Every name an app's options may take: TrainConfig's and the task's fields, and the aliases."""
    from dataclasses import fields

    return {f.name for f in fields(TrainConfig)} | {f.name for f in fields(task_cls)} | set(training_aliases())


def resolve_layers(task_cls: type, layers: list[tuple[str, dict[str, Any]]]) -> tuple[TrainConfig, Any]:
    """(TrainConfig, task config) from ``(source, mapping)`` layers whose keys belong to either class;
    a key of neither is refused naming its source (did you mean ...?)."""
    train_layers, task_layers = [], []
    for source, mapping in layers:
        where = "the command line" if source == "--" else source
        mapping = with_aliases_resolved(mapping, where)
        train, rest = split_layers(TrainConfig, mapping)
        task, unknown = split_layers(task_cls, rest)
        if unknown:
            raise unknown_option(sorted(unknown)[0], option_names(task_cls), where)
        train_layers.append((source, train))
        task_layers.append((source, task))
    return resolve(TrainConfig, *train_layers), resolve(task_cls, *task_layers)


def print_result(run_dir: Path, metrics: dict[str, Any], quiet: bool) -> None:
    if quiet:
        return
    from rich.console import Console

    c = Console()
    val = metrics.get("val_loss")
    c.print(f"[bold]{metrics['status']}[/]: epoch {metrics.get('epoch')}, step {metrics['global_step']}, "
            f"train loss {_fmt(metrics.get('train_loss'))}, validation loss {_fmt(val)} "
            f"in {metrics['train_seconds']:.1f} s")
    c.print(f"run directory: {run_dir} (config.json, model.safetensors, metrics.json, log.csv, plots, "
            "checkpoints/last.ckpt); load it with rnnkit.load(...)")


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.4g}"


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=2)
