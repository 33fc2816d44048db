"""The plan line a benchmark prints before it starts: how long it expects to take, and the --full preset.

Every script under ``benchmarks/`` (and ``rnnkit bench memory``) runs a quick selection by default, a
few minutes at most on a 2-core machine, and the grid its published figures come from behind
``--full``. Before timing anything it prints one line, e.g.::

    # plan: about 1 min 40 s for 24 rows (estimate; --full: grid G, every variant and backend)

(or, where nothing can be estimated beforehand, the planned work). The presets are argparse options
left at ``None``: :func:`apply_preset` fills the ones not given on the command line, so an explicit
flag always wins over the preset, quick or full.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any, TextIO


def duration(seconds: float) -> str:
    """``seconds`` for a reader: ``"40 s"``, ``"1 min 40 s"``, ``"2 h 05 min"``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{max(s, 1)} s"
    if s < 3600:
        minutes, rest = divmod(s, 60)
        return f"{minutes} min" + (f" {rest} s" if rest else "")
    hours, rest = divmod(round(s / 60), 60)
    return f"{hours} h {rest:02d} min"


def add_full_flag(parser: argparse.ArgumentParser, full: str) -> None:
    """``--full``: the preset the published figures come from (``full`` says what it runs)."""
    parser.add_argument("--full", action="store_true",
                        help=f"the full run ({full}) instead of the quick default; explicit flags still win")


def apply_preset(args: argparse.Namespace, quick: Mapping[str, Any], full: Mapping[str, Any]) -> bool:
    """Fill every option still ``None`` from the ``--full`` preset (``args.full``) or the quick one.

    Returns True when the quick preset chose a value the full one would not (a quick run)."""
    preset = full if getattr(args, "full", False) else quick
    chose = False
    for name, value in preset.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
            chose = chose or (preset is quick and value != full.get(name))
    return chose


def plan_line(work: str, seconds: float | None = None, *, upper_bound: bool = False,
              full: str | None = None) -> str:
    """``# plan: about 1 min 40 s for 24 rows (estimate; --full: ...)``.

    ``seconds`` None: the planned work only (nothing could be estimated); ``upper_bound``: the run
    may stop earlier (a time budget per run). ``full``: what ``--full`` runs, for a quick run."""
    notes = []
    if seconds is None:
        head = f"# plan: {work}"
    elif upper_bound:
        head = f"# plan: at most {duration(seconds)} for {work}"
    else:
        head = f"# plan: about {duration(seconds)} for {work}"
        notes.append("estimate")
    if full:
        notes.append(f"--full: {full}")
    return head + (f" ({'; '.join(notes)})" if notes else "")


def announce(work: str, seconds: float | None = None, *, upper_bound: bool = False, full: str | None = None,
             file: TextIO | None = None) -> None:
    """Print :func:`plan_line` (flushed: it must be seen before the first timing starts)."""
    print(plan_line(work, seconds, upper_bound=upper_bound, full=full), file=file or sys.stdout, flush=True)
