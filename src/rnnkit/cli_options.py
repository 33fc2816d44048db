"""The command-line options every app shares, declared once.

Each is a type for a command's parameter (``threads: Threads = None``): the flag's name, help and
help panel are the same in every ``rnnkit <app> <command>`` that takes it, so an option does not
drift between apps. An app's own options stay in its ``cli.py``.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

TRAIN_PANEL = "Training"

NewRunDir = Annotated[Path | None, typer.Option("--out", help="run directory to create")]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="YAML file of options (flags override it)")]
ResumeDir = Annotated[Path | None, typer.Option("--resume", help="continue the run in this directory")]
InitFrom = Annotated[Path | None, typer.Option("--init-from", help="start from this run's weights")]
Minutes = Annotated[float | None, typer.Option("--minutes", help="time budget for training",
                                               rich_help_panel=TRAIN_PANEL)]
Seed = Annotated[int | None, typer.Option("--seed", rich_help_panel=TRAIN_PANEL)]
Threads = Annotated[int | None, typer.Option("--threads", help="torch CPU threads [torch's default]",
                                             rich_help_panel=TRAIN_PANEL)]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar or summary")]
SetOptions = Annotated[list[str] | None, typer.Option("--set", help="any other option: --set key=value",
                                                      rich_help_panel=TRAIN_PANEL)]


# ---- the training flags of every `train` command, generated from TrainConfig's declared options ----
#: flag (parameter name) -> TrainConfig field. Every app's ``train`` takes exactly these, with the same
#: names, types, help and allowed values; the rest of TrainConfig is reachable through ``--set``.
TRAINING_FLAGS: dict[str, str] = {
    "epochs": "max_epochs", "max_steps": "max_steps", "batch_size": "batch_size", "optimizer": "optimizer",
    "lr": "lr", "schedule": "schedule", "clip_norm": "clip_norm", "early_stopping": "early_stopping_patience",
    "seed": "seed", "threads": "threads", "tensorboard": "tensorboard",
}


#: what a TrainConfig default of None means, for --help (else "off")
NONE_MEANS = {"threads": "torch's default"}


def _training_option(flag: str, field: str, app_defaults: Mapping[str, Any]) -> Any:
    """The ``Annotated`` type of one training flag: its type from TrainConfig's annotation, its help
    from the field's declared option (what it means, what it allows) and the app's default."""
    from rnnkit.training.config import TrainConfig
    from rnnkit.validation import option_specs

    spec = option_specs(TrainConfig)[field]
    hint = typing.get_type_hints(TrainConfig)[field]
    base = next((t for t in typing.get_args(hint) if t is not type(None)), hint)  # int | None -> int
    default = app_defaults.get(field, next(f.default for f in dataclasses.fields(TrainConfig) if f.name == field))
    kind = {int: "int", float: "float", str: "str", bool: "bool"}[base]
    words = [w for w in (spec.help, spec.describe(kind) if base is not bool else "") if w]  # meaning; allowed
    shown = default if default is not None else NONE_MEANS.get(field, "off")
    help_text = "; ".join([*words, f"default: {shown}"])
    if base is bool:
        return Annotated[bool | None, typer.Option(f"--{flag}/--no-{flag}", help=help_text,
                                                   rich_help_panel=TRAIN_PANEL)]
    return Annotated[base | None, typer.Option(f"--{flag.replace('_', '-')}", help=help_text,
                                               rich_help_panel=TRAIN_PANEL)]


def training_flags(app_defaults: Mapping[str, Any] | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate an app's ``train`` command: it gains the flags of :data:`TRAINING_FLAGS` (declared
    nowhere else, so they cannot drift between apps) and receives the ones given on the command line
    as ``training``, a dict keyed by TrainConfig field (``{"max_epochs": 5}``); flags left out are
    absent, so the app's defaults, a resumed run and ``--config`` still apply beneath them.
    ``app_defaults`` (TrainConfig field -> value) only shows the app's defaults in ``--help``."""
    shown = dict(app_defaults or {})

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)  # typer reads a given __signature__ as is
        own = [p for p in signature.parameters.values() if p.name != "training"]
        clash = sorted({p.name for p in own} & TRAINING_FLAGS.keys())
        if clash:
            raise TypeError(f"{command.__qualname__} declares the shared training flag(s) {clash} itself")
        added = [inspect.Parameter(flag, inspect.Parameter.KEYWORD_ONLY, default=None,
                                   annotation=_training_option(flag, field, shown))
                 for flag, field in TRAINING_FLAGS.items()]
        # the common tail (--quiet, --set) stays last in --help
        tail = [p for p in own if p.name in ("quiet", "set_")]
        head = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own if p not in tail]
        tail = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in tail]

        @functools.wraps(command)
        def with_training_flags(**kwargs: Any) -> Any:
            given = {TRAINING_FLAGS[f]: kwargs.pop(f) for f in list(TRAINING_FLAGS) if f in kwargs}
            return command(**kwargs, training={k: v for k, v in given.items() if v is not None})

        with_training_flags.__signature__ = signature.replace(parameters=[*head, *added, *tail])  # type: ignore[attr-defined]
        return with_training_flags

    return decorate
