"""Long-range memory benchmarks: adding problem, copy memory and selective copy, per cell.

Trains ``rnnkit.Recurrent(cell, ...) + Linear`` on fresh random batches (Adam, gradient clipping
1.0; once the held-out metric is past half the baseline, the rate halves after ``--patience``
evaluations without a 5% improvement), evaluates on a fixed held-out batch every ``--eval-every``
steps and stops when the metric reaches the task's threshold or the per-run time budget (``--budget``
seconds of training) is spent.
Reports the final metric, whether and when (training wall time, evaluation excluded, and step) the
threshold was reached.

Tasks (``--tasks``, ``name:T`` items; ``--full``: all of these):

- ``adding:200,600,1000`` — MSE, threshold 1e-4 (baseline 1/6); Bai et al. 2018 T=600: LSTM 0.164,
  GRU 5.3e-5.
- ``copy:100,500,1000`` — cross-entropy over all T+20 steps, threshold 1e-3 (memoryless baseline
  10 log 8 / (T+20)); Bai et al. 2018 T=1000: LSTM 0.0204, GRU 0.0197.
- ``selective:256`` — selective copy (16 tokens, vocab 8 here) at the recall steps; cross-entropy,
  threshold: accuracy >= 0.99 (reported with the loss).

Cells (``--cells``): ``elman`` (rnn_tanh), ``lstm`` (torch init), ``lstm_chrono`` (chrono init,
T_max = the sequence length or ``--chrono-tmax``), ``gru``, ``mingru``, ``minlstm``,
``mingru_chrono``, ``minlstm_chrono``, ``exprnn`` (the modReLU Elman cell with an orthogonal
``W_hh = exp(A - A^T)`` started from 2x2 rotations: :func:`rnnkit.orthogonal_recurrence`, the expRNN
of Lezcano-Casado & Martinez-Rubio 2019), and every other registered family under its registry name
(``indrnn``, ``rnn_relu``, ``rnn_modrelu``, a cell you register). The classic cells have one layer
(as Bai et al.); the min cells two (``--min-layers``): one minGRU layer's gates read only its input,
so a single layer cannot keep time during the recall phase (Feng et al. stack them).

By default a quick run (``adding:200`` with ``lstm`` and ``gru``, a 45 s budget each: under two
minutes); ``--full`` runs every task and cell below with a 600 s budget each (many hours on 2 cores).
An explicit ``--tasks``/``--cells``/``--budget`` wins over either preset. The longest the run can take
(runs x budget) is printed first.

Run (the full grid takes many hours on 2 cores)::

    rnnkit bench memory --tasks adding:600 --cells lstm_chrono,mingru --budget 1200 \\
        --json runs/memory_adding600.jsonl --markdown

(or ``python benchmarks/memory_tasks.py ...`` from the repository).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

import rnnkit
from rnnkit._plan import add_full_flag, announce, apply_preset
from rnnkit.cells.registry import cell_names
from rnnkit.errors import UserError
from rnnkit.tasks import (
    ADDING_BASELINE_MSE,
    adding_batch,
    copy_memory_baseline,
    copy_memory_batch,
    selective_copy_batch,
    selective_copy_symbols,
)

_PRESETS = {
    "elman": ("rnn_tanh", {}),
    "lstm": ("lstm", {}),
    "lstm_chrono": ("lstm", {"init": "chrono"}),
    "gru": ("gru", {}),
    "mingru": ("mingru", {}),
    "minlstm": ("minlstm", {}),
    "mingru_chrono": ("mingru", {"init": "chrono"}),
    "minlstm_chrono": ("minlstm", {"init": "chrono"}),
    # Elman with modReLU and an orthogonal W_hh = exp(A - A^T) from rotation blocks (expRNN)
    "exprnn": ("rnn_modrelu", {"orthogonal": True}),
}
# every registered family runs under its own name too (IndRNN, rnn_relu, a user's registered cell)
CELLS = {**_PRESETS, **{name: (name, {}) for name in cell_names()
                        if name not in {cell for cell, options in _PRESETS.values() if not options}}}
DEFAULT_CELLS = ["elman", "lstm", "lstm_chrono", "gru", "mingru", "minlstm", "exprnn"]
QUICK = {"tasks": "adding:200", "cells": "lstm,gru", "budget": 45.0}
FULL_TEXT = "every task and cell, 600 s each"
DEFAULT_TASKS = ["adding:200", "adding:600", "adding:1000", "copy:100", "copy:500", "copy:1000",
                 "selective:256"]
SELECTIVE_VOCAB, SELECTIVE_TOKENS = 8, 16
PUBLISHED = {("adding", 600, "lstm"): 0.164, ("adding", 600, "gru"): 5.3e-5,
             ("copy", 1000, "lstm"): 0.0204, ("copy", 1000, "gru"): 0.0197}


@dataclass
class Row:
    task: str
    T: int
    cell: str
    metric: str
    final: float
    baseline: float
    threshold: float
    reached: bool
    time_to_threshold_s: float | None
    steps_to_threshold: int | None
    steps: int
    train_time_s: float
    accuracy: float | None
    layers: int
    hidden: int
    params: int
    executor: str
    published: float | None
    clock: str = "wall"
    lr: float | None = None
    batch: int | None = None
    stopped: bool = False  # ended by SIGTERM/SIGINT before its budget: the row is what it reached
    residual: bool = False
    schedule: str | None = None  # "plateau(patience, floor)", "cosine(steps, floor)" or "constant"
    chrono_tmax: float | None = None


class Model(nn.Module):
    def __init__(self, cell: str, n_in: int, n_out: int, hidden: int, layers: int, options: dict,
                 chrono_tmax: float, one_hot: bool):
        super().__init__()
        if options.get("init") == "chrono":
            options = {**options, "chrono_tmax": float(max(chrono_tmax, 3))}
        self.one_hot, self.n_in = one_hot, n_in
        orthogonal = options.pop("orthogonal", False)
        self.rnn = rnnkit.Recurrent(cell, n_in, hidden, layers, **options)
        if orthogonal:
            rnnkit.orthogonal_recurrence(self.rnn, init="rotations")
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x):
        if self.one_hot:
            x = F.one_hot(x, self.n_in).float()
        y, _ = self.rnn(x)
        return self.head(y)


class Task:
    def __init__(self, name: str, T: int):
        self.name, self.T = name, T
        self.length = T + 20 if name == "copy" else T  # time steps per sequence
        if name == "adding":
            self.n_in, self.n_out, self.one_hot = 2, 1, False
            self.metric, self.baseline, self.threshold = "mse", ADDING_BASELINE_MSE, 1e-4
        elif name == "copy":
            self.n_in, self.n_out, self.one_hot = 10, 10, True
            self.metric, self.baseline, self.threshold = "loss", copy_memory_baseline(T), 1e-3
        elif name == "selective":
            n = selective_copy_symbols(SELECTIVE_VOCAB)
            self.n_in, self.n_out, self.one_hot = n, n, True
            self.metric, self.baseline, self.threshold = "accuracy", 1 / SELECTIVE_VOCAB, 0.99
        else:
            raise ValueError(f"unknown task {name!r} (adding, copy, selective)")

    def batch(self, n: int, gen: torch.Generator):
        if self.name == "adding":
            return adding_batch(self.T, n, generator=gen)
        if self.name == "copy":
            return copy_memory_batch(self.T, n, generator=gen)
        return selective_copy_batch(self.T, n, SELECTIVE_TOKENS, SELECTIVE_VOCAB, generator=gen)

    def loss(self, out, y):
        """(loss to optimise, metric value, accuracy or None)."""
        if self.name == "adding":
            loss = F.mse_loss(out[-1, :, 0], y)
            return loss, loss.item(), None
        logits = out.reshape(-1, out.shape[-1])
        loss = F.cross_entropy(logits, y.reshape(-1), ignore_index=-100)
        scored = y.reshape(-1) != -100
        if self.name == "copy":
            scored = torch.zeros_like(scored).view(y.shape)
            scored[-10:] = True
            scored = scored.reshape(-1)
        acc = (logits.argmax(-1)[scored] == y.reshape(-1)[scored]).float().mean().item()
        return loss, (acc if self.metric == "accuracy" else loss.item()), acc

    def moved(self, value: float) -> bool:
        """Whether the model is clearly past the trivial baseline (then the rate may decay)."""
        if self.metric == "accuracy":
            return value > self.baseline + 0.5 * (1 - self.baseline)
        return value < 0.5 * self.baseline

    def reached(self, value: float) -> bool:
        return value >= self.threshold if self.metric == "accuracy" else value <= self.threshold


def schedule_name(args) -> str:
    floor = f"{args.lr_floor:.3g}"
    if args.cosine_steps:
        return f"cosine({args.cosine_steps}, floor {floor})"
    if args.patience:
        return f"plateau({args.patience}, floor {floor})"
    return "constant"


def cosine_factor(step: int, steps: int, floor: float) -> float:
    """The rate's fraction of its initial value after ``step`` steps of a cosine decay to ``floor``
    over ``steps`` steps (then the floor)."""
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))


class _StopFlag:
    """Set by SIGTERM/SIGINT: the run in progress ends at its next evaluation and keeps its row, the
    ones after it do not start (a long grid can be cut short without losing what it measured)."""

    def __init__(self) -> None:
        self._set = False

    def set(self, *_args) -> None:
        self._set = True

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set


_STOP = _StopFlag()


def run_one(task: Task, cell_key: str, args) -> Row:
    cell, options = CELLS[cell_key]
    layers = args.min_layers if cell.startswith("min") else 1
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    # chrono's T_max is the span of the dependencies: the whole sequence unless told otherwise
    # (Tallec & Ollivier use 3T/2 for the copy task)
    tmax = args.chrono_tmax or task.length
    if args.residual and layers > 1:
        options = {**options, "residual": True}
    model = Model(cell, task.n_in, task.n_out, args.hidden, layers, dict(options), tmax, task.one_hot)
    lr = args.lr_min if cell.startswith("min") else args.lr
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    # once a model has found the task, a constant Adam rate leaves it on a noise floor above the
    # threshold: halve the rate when the held-out metric stops improving (never before it has moved)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="max" if task.metric == "accuracy" else "min", factor=0.5, patience=args.patience,
        threshold=0.05, min_lr=lr * args.lr_floor) if args.patience and not args.cosine_steps else None
    # or a cosine from lr down to lr * lr_floor over a fixed number of steps, then the floor
    cosine = None
    if args.cosine_steps:
        cosine = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda k: cosine_factor(k, args.cosine_steps, args.lr_floor))
    x_eval, y_eval = task.batch(args.eval_batch, torch.Generator().manual_seed(10_000 + args.seed))
    executor = ",".join(sorted({ex.name for per in model.rnn.plan().executors for ex in per}))
    # wall: elapsed seconds; cpu: this process's CPU seconds (unaffected by other jobs or by a pause)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    train_time, step, reached_at, reached_step = 0.0, 0, None, None
    value, acc = float("nan"), None
    while True:
        t0 = clock()
        for _ in range(args.eval_every):
            x, y = task.batch(args.batch, gen)
            loss, _, _ = task.loss(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            if cosine is not None:
                cosine.step()
            step += 1
        train_time += clock() - t0
        model.eval()
        with torch.no_grad():
            _, value, acc = task.loss(model(x_eval), y_eval)
        model.train()
        if sched is not None and task.moved(value) and math.isfinite(value):
            sched.step(value)
        if args.verbose:
            print(f"  {task.name}:{task.T} {cell_key} step {step} {task.metric}={value:.3g} "
                  f"t={train_time:.0f}s", file=sys.stderr, flush=True)
        if task.reached(value) and reached_at is None:
            reached_at, reached_step = train_time, step
            break
        if (not math.isfinite(value) or train_time >= args.budget or step >= args.max_steps
                or _STOP.is_set()):
            break
    return Row(task.name, task.T, cell_key, task.metric, value, task.baseline, task.threshold,
               reached_at is not None, reached_at, reached_step, step, train_time, acc, layers,
               args.hidden, sum(p.numel() for p in model.parameters()), executor,
               PUBLISHED.get((task.name, task.T, cell_key)), args.clock, lr, args.batch,
               _STOP.is_set(), bool(args.residual and layers > 1), schedule_name(args),
               float(tmax) if options.get("init") == "chrono" else None)


def markdown(rows: list[Row]) -> str:
    out = ["| task | T | cell | layers x H | Adam lr, schedule | metric | final | threshold | reached "
           "| time to threshold (s) | steps | train time (s) | Bai et al. 2018 |", "|" + "---|" * 13]
    for r in rows:
        ttt = f"{r.time_to_threshold_s:.0f}" if r.time_to_threshold_s is not None else "-"
        pub = f"{r.published:.3g}" if r.published is not None else ""
        final = f"{r.final:.3g}"
        if r.accuracy is not None and r.metric != "accuracy":
            final += f" (acc {r.accuracy:.3f})"
        lr = f"{r.lr:g}" if r.lr is not None else "-"
        if r.schedule:
            lr += f", {r.schedule}"
        shape = f"{r.layers} x {r.hidden}" + (" residual" if r.residual else "")
        cell = r.cell + (f" (T_max {r.chrono_tmax:g})" if r.chrono_tmax else "")
        reached = "yes" if r.reached else ("no (stopped)" if r.stopped else "no")
        out.append(f"| {r.task} | {r.T} | {cell} | {shape} | {lr} | {r.metric} | "
                   f"{final} | {r.threshold:g} | {reached} | {ttt} | {r.steps} | "
                   f"{r.train_time_s:.0f} | {pub} |")
    return "\n".join(out)


def load_rows(paths: list[str]) -> list[Row]:
    """Rows from JSON-lines files written by ``--json``, in task order (as DEFAULT_TASKS), then T,
    then cell (as CELLS); rows of one (task, T, cell) keep their file order."""
    fields = {f.name for f in Row.__dataclass_fields__.values()}
    rows = []
    for path in paths:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise UserError(f"cannot read {path}: {e.strerror}") from None
        except UnicodeDecodeError:
            raise UserError(f"{path}: not a text file (UTF-8)") from None
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{n}: not JSON ({e.msg})") from None
            required = [f.name for f in Row.__dataclass_fields__.values()
                        if f.default is dataclasses.MISSING]
            missing = [k for k in required if not isinstance(data, dict) or k not in data]
            if missing:
                raise UserError(f"{path}:{n}: not a row of this benchmark (no {', '.join(missing[:3])}"
                                f"{' ...' if len(missing) > 3 else ''})")
            rows.append(Row(**{k: v for k, v in data.items() if k in fields}))
    task_order = {name: i for i, name in enumerate(("adding", "copy", "selective"))}
    cell_order = {name: i for i, name in enumerate(CELLS)}
    return sorted(rows, key=lambda r: (task_order.get(r.task, 9), r.T, cell_order.get(r.cell, 99)))


def parse_tasks(spec: str) -> list[Task]:
    tasks = []
    for item in spec.split(","):
        name, _, T = item.partition(":")
        try:
            tasks.append(Task(name.strip(), int(T)))
        except ValueError as e:
            why = e if "unknown task" in str(e) else "T must be an integer"
            raise UserError(f"bad task {item!r} (name:T, e.g. adding:600): {why}") from None
        if tasks[-1].T < 2:
            raise UserError(f"bad task {item!r}: T must be at least 2")
    return tasks


class _OneLineErrors(argparse.ArgumentParser):
    """For the CLI: a bad option is a UserError (one line, exit 2), not argparse's usage dump."""

    def error(self, message: str):
        raise UserError(message)


def main(argv: list[str] | None = None, prog: str | None = None) -> list[Row]:
    """Run the benchmark (``prog`` set: called by the ``rnnkit`` CLI, bad options raise UserError)."""
    parser = _OneLineErrors if prog else argparse.ArgumentParser
    p = parser(prog=prog, description=__doc__.splitlines()[0])
    add_full_flag(p, FULL_TEXT)
    p.add_argument("--tasks", default=None,
                   help=f"name:T items, comma separated (default {QUICK['tasks']}; --full: {','.join(DEFAULT_TASKS)})")
    p.add_argument("--cells", default=None,
                   help=f"from {', '.join(CELLS)} (default {QUICK['cells']}; --full: {','.join(DEFAULT_CELLS)})")
    p.add_argument("--budget", type=float, default=None,
                   help=f"training seconds per run (default {QUICK['budget']:.0f}; --full: 600)")
    p.add_argument("--max-steps", type=int, default=10**9)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--chrono-tmax", type=float, default=None,
                   help="T_max of the chrono initialisation (default: the sequence length)")
    p.add_argument("--min-layers", type=int, default=2)
    p.add_argument("--residual", action="store_true",
                   help="add each layer's input to its output from the second layer on (stacks only)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--eval-batch", type=int, default=512)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam lr of the classic cells")
    p.add_argument("--lr-min", type=float, default=3e-3, help="Adam lr of minGRU/minLSTM")
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--patience", type=int, default=4,
                   help="halve the lr after this many evaluations without a 5%% improvement, once the metric "
                        "is below half the baseline (0: constant lr)")
    p.add_argument("--lr-floor", type=float, default=1 / 64,
                   help="the schedule's lowest rate, as a fraction of the initial one (1/64)")
    p.add_argument("--cosine-steps", type=int, default=0,
                   help="instead of the plateau schedule: cosine decay to the floor over this many steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="what --budget and the reported times count: wall seconds, or the process's CPU "
                        "seconds (for one thread on a shared machine: contention and pauses do not count)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None, help="append rows to this JSON-lines file")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--report", nargs="+", default=None, metavar="JSONL",
                   help="print the markdown table of rows saved by --json (no training)")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.report:
        rows = load_rows(args.report)
        print(markdown(rows))
        return rows
    quick = apply_preset(args, QUICK, {"tasks": ",".join(DEFAULT_TASKS), "cells": ",".join(DEFAULT_CELLS),
                                       "budget": 600.0})
    if not 0 < args.lr_floor <= 1:
        p.error(f"--lr-floor must be in (0, 1], got {args.lr_floor}")
    if args.cosine_steps < 0:
        p.error(f"--cosine-steps must be >= 0, got {args.cosine_steps}")
    if args.threads:
        torch.set_num_threads(args.threads)
    cells = [c.strip() for c in args.cells.split(",")]
    for c in cells:
        if c not in CELLS:
            p.error(f"unknown cell {c!r}; choose from {', '.join(CELLS)}")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, torch "
          f"{torch.__version__}, threads {torch.get_num_threads()}; argv: {' '.join(sys.argv[1:])}",
          flush=True)
    rows = []
    tasks = parse_tasks(args.tasks)
    n_runs = len(tasks) * len(cells)
    announce(f"{n_runs} runs ({args.tasks} x {','.join(cells)}), each until its threshold or {args.budget:g} "
             f"{args.clock} seconds of training (evaluations not counted)", n_runs * args.budget,
             upper_bound=True, full=FULL_TEXT if quick else None)
    _STOP.clear()
    previous = {sig: signal.signal(sig, _STOP.set) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for task, cell in ((t, c) for t in tasks for c in cells):
            if _STOP.is_set():
                break
            row = run_one(task, cell, args)
            rows.append(row)
            print(json.dumps(asdict(row)), flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(asdict(row)) + "\n")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if args.markdown:
        print(markdown(rows))
    return rows


if __name__ == "__main__":
    main()
