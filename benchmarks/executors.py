"""Speed of rnnkit's executors against torch.nn (CPU): the harness later executors extend.

Times ``rnnkit.Recurrent(cell, I, H, backend=NAME, batch_first=False)`` against its torch.nn anchor
(``torch.nn.LSTM``/``GRU``/``RNN``) at the same size with identical weights, in the same process,
interleaved (anchor, ours, anchor, ours, ... per repetition), and prints the median times and the
ratio ``ours / anchor`` (a time ratio: above 1 means rnnkit is slower).

Variants: every registered cell family in its default options (``rnnkit.cells.cell_names()``; a cell
without a torch.nn equivalent, e.g. ``indrnn``, is timed against ``torch.nn.RNN`` of its size, with
no weight sharing or output comparison), plus LSTM variants that torch.nn cannot
run (``lstm+layer_norm``, ``lstm+peephole``, ``lstm+zoneout`` (p=0.1), ``lstm+recurrent_dropout``
(p=0.25, train mode)). A variant is compared to plain ``torch.nn.LSTM`` at the same size: that is the
speed a fast executor for the variant has to reach (target: at most 1.25x torch.nn.LSTM).

Modes:

- ``fwd``: forward only, under ``torch.no_grad()``, modules in eval mode unless the variant needs
  train mode (recurrent dropout). Zoneout in eval mode mixes in its expectation inside the loop.
- ``fwdbwd``: forward, ``output.sum().backward()``, modules in train mode, the input requiring grad
  (so the timed backward includes the input gradient, as inside a stack). Gradients are cleared
  outside the timed region.

Backends are ``auto`` and the names in ``rnnkit.executors.backend_names()``. A backend that cannot run
a configuration is reported ``n/a`` with its reason. ``auto`` is measured once with the explicit
backend it resolves to when that one is also asked for (``--measure-aliases`` measures it apart).
Before timing anything, every rnnkit module and its anchor run on a short prefix of the sequence
to estimate one repetition; the script prints the whole run's expected duration from these
estimates (``# plan: about ...``), then times. A row whose estimate exceeds ``--budget`` seconds is
reported ``skipped (budget)`` (this keeps the slow ``reference`` loop from dominating a run).

By default the script runs a quick selection (under two minutes on 2 cores): the ``quick`` grid
(100x1x64x64, 100x32x128x128, 512x16x64x128), ``lstm,gru,lstm+layer_norm,mingru``, backends
``auto,fused_cpu,native``, 5 repetitions. ``--full`` runs grid G, every variant and backend, 7
repetitions (about 20 minutes on 2 cores): the tables of docs/benchmarks.md. An explicit
``--grid``/``--cells``/``--backends``/``--modes``/``--reps`` wins over either preset.

Run (from the repository root)::

    .venv/bin/python benchmarks/executors.py                      # the quick selection
    .venv/bin/python benchmarks/executors.py --full               # grid G, every variant/backend
    .venv/bin/python benchmarks/executors.py --grid small --reps 3 --cells lstm,gru
    .venv/bin/python benchmarks/executors.py --full --backends auto,native,reference --markdown \\
        --json runs/bench_executors.json

``--grid`` takes ``G`` (the grid of docs/benchmarks.md), ``quick`` (the default's three sizes),
``small`` (a subset for smoke runs) or explicit sizes ``TxBxIxH[,TxBxIxH...]``. Measure on an
otherwise idle machine: the machine information printed first includes the load average at the
start and at the end of the run.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import rnnkit
from rnnkit import Recurrent
from rnnkit._plan import add_full_flag, announce, apply_preset
from rnnkit.cells import cell_names
from rnnkit.errors import BackendUnavailable
from rnnkit.executors import backend_names

MODES = ("fwd", "fwdbwd")


@dataclass(frozen=True)
class Size:
    """One grid point: sequence length, batch, input size, hidden size (time-major input)."""

    T: int
    B: int
    I: int
    H: int

    def __str__(self) -> str:
        return f"{self.T}x{self.B}x{self.I}x{self.H}"


GRIDS: dict[str, tuple[Size, ...]] = {
    "G": (
        Size(100, 1, 64, 64),
        Size(100, 32, 128, 128),
        Size(100, 64, 256, 256),
        Size(200, 64, 512, 512),
        Size(512, 16, 64, 128),
    ),
    "small": (Size(100, 1, 64, 64), Size(100, 32, 128, 128)),
    # the default run's sizes: one sequence (per-step overhead), a mid-size batch, a long sequence
    "quick": (Size(100, 1, 64, 64), Size(100, 32, 128, 128), Size(512, 16, 64, 128)),
}


# torch.nn modules computing a registered cell's equations; any other cell is timed against the
# Elman RNN of its size (the speed of the simplest recurrence a fast executor competes with)
TORCH_EQUIVALENTS: dict[str, tuple[type[nn.RNNBase], dict[str, Any]]] = {
    "lstm": (nn.LSTM, {}),
    "gru": (nn.GRU, {}),
    "rnn_tanh": (nn.RNN, {}),
    "rnn_relu": (nn.RNN, {"nonlinearity": "relu"}),
}
OTHER_ANCHOR: tuple[type[nn.RNNBase], dict[str, Any]] = (nn.RNN, {})


@dataclass(frozen=True)
class Variant:
    """An rnnkit configuration and the torch.nn module it is compared to."""

    name: str
    cell: str
    options: tuple[tuple[str, Any], ...] = ()
    needs_train: bool = False  # the option only acts in train mode

    @property
    def equivalent(self) -> bool:
        """Whether the anchor computes the same function (then weights are shared and compared)."""
        return self.cell in TORCH_EQUIVALENTS

    @property
    def anchor_class(self) -> type[nn.RNNBase]:
        return TORCH_EQUIVALENTS.get(self.cell, OTHER_ANCHOR)[0]

    @property
    def anchor_name(self) -> str:
        return f"torch.nn.{self.anchor_class.__name__}"

    def make_anchor(self, size: Size) -> nn.RNNBase:
        extra = TORCH_EQUIVALENTS.get(self.cell, OTHER_ANCHOR)[1]
        return self.anchor_class(size.I, size.H, batch_first=False, **extra)

    def make_ours(self, size: Size, backend: str) -> Recurrent:
        return Recurrent(
            self.cell, size.I, size.H, backend=backend, batch_first=False, **dict(self.options)
        )


def _variants() -> dict[str, Variant]:
    """The option variants below, then every registered cell family in its default options (a cell
    registered with ``rnnkit.cells.register_cell`` before this runs is measured too)."""
    listed = (
        Variant("lstm", "lstm"),
        Variant("gru", "gru"),
        Variant("rnn_tanh", "rnn_tanh"),
        Variant("lstm+layer_norm", "lstm", (("layer_norm", True),)),
        Variant("lstm+peephole", "lstm", (("peephole", True),)),
        Variant("lstm+zoneout", "lstm", (("zoneout", 0.1),)),
        Variant("lstm+recurrent_dropout", "lstm", (("recurrent_dropout", 0.25),), needs_train=True),
    )
    variants = {v.name: v for v in listed}
    for name in cell_names():
        variants.setdefault(name, Variant(name, name))
    return variants


VARIANTS: dict[str, Variant] = _variants()


@dataclass
class Row:
    """One measured (or skipped) configuration. Times in milliseconds, medians over repetitions."""

    variant: str
    mode: str
    T: int
    B: int
    I: int
    H: int
    backend: str
    anchor: str
    status: str = "ok"  # "ok", "skipped (budget)", "n/a: <reason>", "error: <message>"
    executor: str = ""  # what actually ran (from Recurrent.plan)
    alias_of: str | None = None  # auto measured once with this explicit backend
    ours_ms: float | None = None
    anchor_ms: float | None = None
    ratio: float | None = None  # median(ours) / median(anchor)
    ratio_paired: float | None = None  # median over repetitions of ours_i / anchor_i
    ratio_min: float | None = None  # min(ours) / min(anchor): less sensitive to a busy machine
    spread: float | None = None  # (max - min) / median of ours' repetitions
    estimate_s: float | None = None  # estimated seconds of one repetition of ours
    max_abs_diff: float | None = None  # plain cells: |ours - torch.nn| on one forward pass
    ours_samples_ms: list[float] = field(default_factory=list)
    anchor_samples_ms: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


# ---- environment ------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


THREAD_ENV = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "KMP_BLOCKTIME", "MKL_NUM_THREADS")


def busy_warning() -> str | None:
    """A warning when other processes compete for the CPU (timings are then noisy)."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return None
    cpus = os.cpu_count() or 1
    if load <= 0.5 * cpus:
        return None
    return (
        f"1-minute load average {load:.1f} on {cpus} logical CPUs: other processes compete for the "
        "CPU, so timings are noisy (with OpenMP's default spin-waiting, badly so for threads > 1)"
    )


def machine_info(threads: int) -> dict[str, Any]:
    env = {k: os.environ[k] for k in THREAD_ENV if k in os.environ}
    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch": torch.__version__,
        "rnnkit": rnnkit.__version__,
        "python": platform.python_version(),
        "threads": threads,
        "mkldnn": torch.backends.mkldnn.is_available(),
        "env": " ".join(f"{k}={v}" for k, v in env.items()) or "(no OpenMP/MKL variables set)",
        "load_average_start": load_average(),
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
    }


# ---- argument parsing -------------------------------------------------------------------------
# the default run: a few representative cells, sizes and backends (under two minutes on 2 cores)
QUICK: dict[str, Any] = {
    "grid": GRIDS["quick"],
    "cells": ["lstm", "gru", "lstm+layer_norm", "mingru"],
    "backends": ["auto", "fused_cpu", "native"],
    "modes": list(MODES),
    "reps": 5,
}
FULL_TEXT = "grid G, every variant and backend, 7 repetitions"


def full_preset() -> dict[str, Any]:
    """``--full``: grid G, every variant and backend (the tables of docs/benchmarks.md)."""
    return {"grid": GRIDS["G"], "cells": list(VARIANTS), "backends": ["auto", *backend_names()],
            "modes": list(MODES), "reps": 7}


def parse_grid(text: str) -> tuple[Size, ...]:
    if text in GRIDS:
        return GRIDS[text]
    sizes = []
    for part in text.split(","):
        try:
            T, B, I, H = (int(v) for v in part.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"--grid takes {' or '.join(GRIDS)} or TxBxIxH[,TxBxIxH...], got {part!r}"
            ) from None
        sizes.append(Size(T, B, I, H))
    return tuple(sizes)


def parse_list(choices: Sequence[str], what: str):
    def parse(text: str) -> list[str]:
        items = [s.strip() for s in text.split(",") if s.strip()]
        unknown = [s for s in items if s not in choices]
        if unknown or not items:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(unknown) or '(none)'}; choose from: {', '.join(choices)}"
            )
        return items

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="benchmarks/executors.py",
        description="rnnkit executors vs torch.nn: median times and ratios (ours / torch.nn).",
    )
    add_full_flag(p, FULL_TEXT)
    p.add_argument("--grid", type=parse_grid, default=None,
                   help="G, quick, small, or TxBxIxH[,TxBxIxH...] (default quick; --full: G)")
    p.add_argument("--cells", type=parse_list(list(VARIANTS), "cells"), default=None,
                   help=f"comma-separated variants (default {','.join(QUICK['cells'])}; --full: all: "
                        f"{','.join(VARIANTS)})")
    backends = ["auto", *backend_names()]
    p.add_argument("--backends", type=parse_list(backends, "backends"), default=None,
                   help=f"comma-separated rnnkit backends (default {','.join(QUICK['backends'])}; --full: "
                        f"{','.join(backends)})")
    p.add_argument("--modes", type=parse_list(MODES, "modes"), default=None,
                   help="fwd,fwdbwd (default both)")
    p.add_argument("--reps", type=int, default=None,
                   help=f"timed repetitions per row (median; default {QUICK['reps']}; --full: 7)")
    p.add_argument("--warmup", type=int, default=1, help="untimed full-size runs per module (1)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (2)")
    p.add_argument("--budget", type=float, default=20.0,
                   help="skip a row whose estimated single repetition exceeds this many seconds (20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--measure-aliases", action="store_true",
                   help="time auto separately even when it resolves to an explicitly listed backend")
    p.add_argument("--markdown", action="store_true",
                   help="also print markdown tables (for docs/benchmarks.md)")
    p.add_argument("--json", type=Path, default=None, help="write machine info and rows here")
    return p


# ---- timing -----------------------------------------------------------------------------------
def set_mode(module: nn.Module, mode: str, variant: Variant) -> None:
    module.train(mode == "fwdbwd" or variant.needs_train)


def run_once(module: nn.Module, x: Tensor, mode: str) -> float:
    """Seconds for one forward (``fwd``) or forward+backward (``fwdbwd``) pass."""
    if mode == "fwd":
        with torch.no_grad():
            start = time.perf_counter()
            module(x)
            return time.perf_counter() - start
    module.zero_grad(set_to_none=True)
    x.grad = None
    start = time.perf_counter()
    output, _ = module(x)
    output.sum().backward()
    return time.perf_counter() - start


def make_input(size: Size, mode: str, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(size.T, size.B, size.I, generator=g)
    return x.requires_grad_(mode == "fwdbwd")


PROBE_STEPS = 16


def estimate_rep(module: nn.Module, x: Tensor, mode: str, probe_steps: int = PROBE_STEPS) -> float:
    """Seconds of one full repetition, extrapolated (linearly in T) from a short prefix: the faster of
    two runs, so that one stall of a busy machine is not multiplied by ``T / probe_steps``."""
    T = x.shape[0]
    steps = min(T, probe_steps)
    prefix = x[:steps].detach().requires_grad_(x.requires_grad)
    run_once(module, prefix, mode)  # first call: allocations, kernel selection
    return min(run_once(module, prefix, mode) for _ in range(2)) * T / steps


def executor_label(module: Recurrent, x: Tensor) -> str:
    """Which executor(s) a forward pass of ``module`` runs now; raises if the backend cannot."""
    plan = module.plan(x.device, x.dtype, batch=x.shape[0 if module.batch_first else 1])
    if plan.whole_stack:
        return plan.executors[0][0].name + " (whole stack)"
    names = dict.fromkeys(e.name for layer in plan.executors for e in layer)
    return "+".join(names)


def copy_weights(anchor: nn.Module, ours: Recurrent) -> None:
    """Load the anchor's parameters into ours; only the variant's extra parameters may stay."""
    result = ours.load_state_dict(anchor.state_dict(), strict=False)
    anchor_keys = set(anchor.state_dict())
    stray = [k for k in result.missing_keys if k in anchor_keys]
    if result.unexpected_keys or stray:
        raise RuntimeError(
            f"weights do not line up: unexpected {result.unexpected_keys}, missing {stray}"
        )


def max_abs_diff(anchor: nn.Module, ours: nn.Module, x: Tensor) -> float:
    was = anchor.training, ours.training
    anchor.eval()
    ours.eval()
    with torch.no_grad():
        diff = (anchor(x)[0] - ours(x)[0]).abs().max().item()
    anchor.train(was[0])
    ours.train(was[1])
    return diff


@dataclass
class Entry:
    """An rnnkit module to time in a group, with the row it fills."""

    row: Row
    module: Recurrent | None = None


@dataclass
class Group:
    """One (variant, size, mode) ready to time: its anchor, input, rows and the modules to time."""

    variant: Variant
    mode: str
    anchor: nn.RNNBase
    x: Tensor
    rows: list[Row]
    runnable: list[Entry]  # estimated, within the budget
    aliases: list[tuple[Row, Row]]  # (auto, the explicit backend's row it copies)
    anchor_estimate_s: float = 0.0  # one repetition of the anchor, estimated like ours

    def expected_s(self, args: argparse.Namespace) -> float:
        """Seconds :func:`time_group` is expected to take, from the estimates of one repetition:
        warm-up and timed repetitions of every runnable module, paired with the anchor's, and the
        output comparison of a plain cell."""
        plain = not self.variant.options and self.variant.equivalent
        total = 0.0
        for entry in self.runnable:
            est = entry.row.estimate_s or 0.0
            total += est * (args.warmup + args.reps + plain)
            total += self.anchor_estimate_s * (args.reps + plain)
        if self.runnable:
            total += self.anchor_estimate_s * args.warmup
        return total


def prepare_group(
    variant: Variant, size: Size, mode: str, backends: Sequence[str], args: argparse.Namespace,
    estimates: dict[str, float] | None = None,
) -> Group:
    """Build the modules of one (variant, size, mode) and estimate one repetition of each on a short
    prefix (``estimates``: backend -> seconds from an earlier probe of the same group, reused)."""
    torch.manual_seed(args.seed)
    anchor = variant.make_anchor(size)
    set_mode(anchor, mode, variant)
    x = make_input(size, mode, args.seed)

    rows: list[Row] = []
    timed: list[Entry] = []
    by_label: dict[str, str] = {}
    for backend in backends:
        row = Row(variant.name, mode, size.T, size.B, size.I, size.H, backend, variant.anchor_name)
        rows.append(row)
        try:
            ours = variant.make_ours(size, backend)
            if variant.equivalent:
                copy_weights(anchor, ours)
            set_mode(ours, mode, variant)
            row.executor = executor_label(ours, x)
        except BackendUnavailable as err:
            row.status = f"n/a: {err}"
            continue
        except Exception as err:  # a bug in rnnkit: report it, keep measuring the rest
            row.status = f"error: {type(err).__name__}: {err}"
            continue
        timed.append(Entry(row, ours))
        if backend != "auto":
            by_label.setdefault(row.executor, backend)

    # auto resolving to an explicitly listed backend is measured once, with that backend
    aliases: list[tuple[Row, Row]] = []
    if not args.measure_aliases:
        for entry in list(timed):
            target = by_label.get(entry.row.executor)
            if entry.row.backend == "auto" and target is not None:
                entry.row.alias_of = target
                source = next(e.row for e in timed if e.row.backend == target)
                aliases.append((entry.row, source))
                timed.remove(entry)

    runnable: list[Entry] = []
    for entry in timed:
        assert entry.module is not None
        try:
            known = (estimates or {}).get(entry.row.backend)
            entry.row.estimate_s = known if known is not None else estimate_rep(entry.module, x, mode)
            if entry.row.estimate_s > args.budget:
                entry.row.status = "skipped (budget)"
                continue
        except Exception as err:
            entry.row.status = f"error: {type(err).__name__}: {err}"
            continue
        runnable.append(entry)
    group = Group(variant, mode, anchor, x, rows, runnable, aliases)
    if runnable:
        known = (estimates or {}).get("torch.nn")
        group.anchor_estimate_s = known if known is not None else estimate_rep(anchor, x, mode)
    return group


def probe_group(
    variant: Variant, size: Size, mode: str, backends: Sequence[str], args: argparse.Namespace,
) -> tuple[int, float, dict[str, float]]:
    """(rows, expected seconds, estimates by backend and ``torch.nn``) of one group; its modules are
    dropped (a whole grid's would not fit in memory) and rebuilt when it is timed."""
    group = prepare_group(variant, size, mode, backends, args)
    estimates = {e.row.backend: e.row.estimate_s for e in group.runnable if e.row.estimate_s is not None}
    estimates.update({r.backend: r.estimate_s for r in group.rows
                      if r.status == "skipped (budget)" and r.estimate_s is not None})
    if group.runnable:
        estimates["torch.nn"] = group.anchor_estimate_s
    return len(group.rows), group.expected_s(args), estimates


def measure_group(
    variant: Variant, size: Size, mode: str, backends: Sequence[str], args: argparse.Namespace,
    estimates: dict[str, float] | None = None,
) -> list[Row]:
    """All backends of one (variant, size, mode): each row paired with its own anchor samples."""
    return time_group(prepare_group(variant, size, mode, backends, args, estimates), args)


def time_group(group: Group, args: argparse.Namespace) -> list[Row]:
    anchor, x, mode, runnable = group.anchor, group.x, group.mode, group.runnable
    plain = not group.variant.options and group.variant.equivalent
    for entry in list(runnable):
        assert entry.module is not None
        try:
            for _ in range(args.warmup):
                run_once(entry.module, x, mode)
            if plain:
                entry.row.max_abs_diff = max_abs_diff(anchor, entry.module, x)
        except Exception as err:
            entry.row.status = f"error: {type(err).__name__}: {err}"
            runnable.remove(entry)

    if runnable:
        for _ in range(args.warmup):
            run_once(anchor, x, mode)
        gc.collect()
        for rep in range(args.reps):
            shift = rep % len(runnable)
            for entry in runnable[shift:] + runnable[:shift]:
                assert entry.module is not None
                entry.row.anchor_samples_ms.append(run_once(anchor, x, mode) * 1e3)
                entry.row.ours_samples_ms.append(run_once(entry.module, x, mode) * 1e3)
        for entry in runnable:
            summarise(entry.row)

    for alias, source in group.aliases:
        for name in ("status", "ours_ms", "anchor_ms", "ratio", "ratio_paired", "spread",
                     "ratio_min", "estimate_s", "max_abs_diff", "ours_samples_ms", "anchor_samples_ms"):
            setattr(alias, name, getattr(source, name))
    return group.rows


def summarise(row: Row) -> None:
    ours, anchor = row.ours_samples_ms, row.anchor_samples_ms
    row.ours_ms = statistics.median(ours)
    row.anchor_ms = statistics.median(anchor)
    row.ratio = row.ours_ms / row.anchor_ms
    row.ratio_paired = statistics.median(o / a for o, a in zip(ours, anchor, strict=True))
    row.ratio_min = min(ours) / min(anchor)
    row.spread = (max(ours) - min(ours)) / row.ours_ms


# ---- reporting --------------------------------------------------------------------------------
TEXT_HEADER = (
    f"{'variant':<23} {'mode':<6} {'T':>4} {'B':>3} {'I':>4} {'H':>4} {'backend':<10} "
    f"{'executor':<22} {'ours ms':>9} {'torch ms':>9} {'ratio':>6} {'r(min)':>6} {'spread':>6}  note"
)


def text_line(row: Row) -> str:
    head = (
        f"{row.variant:<23} {row.mode:<6} {row.T:>4} {row.B:>3} {row.I:>4} {row.H:>4} "
        f"{row.backend:<10} {row.executor:<22} "
    )
    notes = []
    if row.alias_of:
        notes.append(f"same run as {row.alias_of}")
    if row.max_abs_diff is not None and row.max_abs_diff > 1e-4:
        notes.append(f"OUTPUT MISMATCH vs torch.nn: max|diff|={row.max_abs_diff:.2e}")
    if row.ok:
        assert row.ours_ms is not None and row.anchor_ms is not None and row.ratio is not None
        nums = (
            f"{row.ours_ms:>9.2f} {row.anchor_ms:>9.2f} {row.ratio:>6.2f} {row.ratio_min:>6.2f} "
            f"{row.spread:>6.0%}"
        )
        return head + nums + ("  " + "; ".join(notes) if notes else "")
    if row.status == "skipped (budget)":
        notes.insert(0, f"estimated {row.estimate_s:.1f} s per repetition")
    return head + row.status + ("  (" + "; ".join(notes) + ")" if notes else "")


def markdown_cell(row: Row) -> str:
    if row.ok:
        return f"{row.ratio:.2f}x ({fmt_ms(row.ours_ms)})"
    if row.status.startswith("n/a"):
        return "n/a"
    return row.status.split(":")[0]


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "-"
    return f"{ms:.0f} ms" if ms >= 100 else f"{ms:.3g} ms"


def markdown_tables(rows: Sequence[Row], backends: Sequence[str]) -> str:
    """One table per mode: a line per (variant, size), a column per backend."""
    out = []
    for mode in MODES:
        mode_rows = [r for r in rows if r.mode == mode]
        if not mode_rows:
            continue
        title = "forward only (no_grad)" if mode == "fwd" else "forward + backward"
        out.append(f"**{title}**, ratio = rnnkit time / torch.nn time (median ms in brackets)\n")
        header = ["variant", "T", "B", "I", "H", "torch.nn", *backends]
        if "auto" in backends:
            header.append("auto runs")
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "|".join(["---", "--:", "--:", "--:", "--:", "--:"]
                                  + ["--:"] * len(backends) + (["---"] if "auto" in backends else []))
                   + "|")
        keys = dict.fromkeys((r.variant, r.T, r.B, r.I, r.H) for r in mode_rows)
        for key in keys:
            group = {r.backend: r for r in mode_rows if (r.variant, r.T, r.B, r.I, r.H) == key}
            anchors = [s for r in group.values() for s in r.anchor_samples_ms]
            anchor = fmt_ms(statistics.median(anchors)) if anchors else "-"
            first = next(iter(group.values()))
            cells = [key[0], *(str(k) for k in key[1:]), f"{anchor} ({first.anchor[9:]})"]
            cells += [markdown_cell(group[b]) if b in group else "-" for b in backends]
            if "auto" in backends:
                auto = group.get("auto")
                cells.append(auto.executor if auto and auto.executor else "-")
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically: a temporary name, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1) + "\n")
    tmp.replace(path)


# ---- main -------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, bool]:
    """The options of ``argv`` with the preset filled in (quick, or ``--full``); whether the quick
    preset chose any of them."""
    parser = build_parser()
    args = parser.parse_args(argv)
    quick = apply_preset(args, QUICK, full_preset())
    if args.reps < 1 or args.warmup < 0 or args.threads < 1:
        parser.error("--reps and --threads must be >= 1, --warmup >= 0")
    return args, quick


def planned_rows(args: argparse.Namespace) -> int:
    """Rows the run reports: a row per mode, size, variant and backend."""
    return len(args.modes) * len(args.grid) * len(args.cells) * len(args.backends)


def main(argv: Sequence[str] | None = None) -> list[Row]:
    """Run the benchmark described by ``argv`` (``sys.argv[1:]`` if None); return the rows."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args, quick = parse_args(argv)

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    info = machine_info(args.threads)
    command = shlex.join(["python", "benchmarks/executors.py", *argv])
    print("# rnnkit executors vs torch.nn")
    for key, value in info.items():
        print(f"# {key}: {value}")
    print(f"# command: {command}")
    busy = busy_warning()
    if busy:
        print(f"# WARNING: {busy}")
    print("# ratio = median(ours) / median(torch.nn): a time ratio, > 1 means rnnkit is slower;")
    print("# r(min) = min(ours) / min(torch.nn); spread = (max - min) / median of ours' repetitions")

    rows: list[Row] = []
    try:
        groups = [(VARIANTS[name], size, mode) for mode in args.modes for size in args.grid for name in args.cells]
        print(f"# estimating: every module of {len(groups)} groups once on a {PROBE_STEPS}-step prefix", flush=True)
        probed = [probe_group(*g, args.backends, args) for g in groups]
        expected = sum(seconds for _, seconds, _ in probed)
        info["expected_s"] = float(f"{expected:.3g}")
        announce(f"{sum(n for n, _, _ in probed)} rows", expected,
                 full=f"{FULL_TEXT}, the tables of docs/benchmarks.md" if quick else None)
        print(TEXT_HEADER, flush=True)
        for g, (_, _, estimates) in zip(groups, probed, strict=True):
            group = measure_group(*g, args.backends, args, estimates)
            for row in group:
                print(text_line(row), flush=True)
            rows.extend(group)
    finally:
        torch.set_num_threads(previous_threads)

    info["load_average_end"] = load_average()
    info["wall_s"] = round(time.perf_counter() - started, 1)
    print(f"# load_average_end: {info['load_average_end']}; wall {info['wall_s']} s")
    if args.markdown:
        print()
        print(markdown_tables(rows, args.backends))
    if args.json is not None:
        write_json(args.json, {"machine": info, "command": command,
                               "rows": [asdict(r) for r in rows]})
        print(f"# wrote {args.json}")
    return rows


if __name__ == "__main__":
    result = main()
    errors = [r for r in result if r.status.startswith("error")]
    sys.exit(1 if errors else 0)
