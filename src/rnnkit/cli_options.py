"""The command-line options every app shares, declared once.

Each is a type for a command's parameter (``threads: Threads = None``): the flag's name, help and
help panel are the same in every ``rnnkit <app> <command>`` that takes it, so an option does not
drift between apps. An app's own options stay in its ``cli.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
