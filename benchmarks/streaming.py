"""Speed of ``Recurrent.step()`` (streaming, one time step per call) against torch.nn's cells.

For each cell variant, in one process and interleaved (anchor, ours, ... per repetition), times

- ``ours``: ``rnnkit.Recurrent(cell, I, H).eval().step(x_t, state)`` under ``torch.inference_mode()``
  (the fast C++ step of :mod:`rnnkit.executors.streaming`), each step given the state the last one
  returned, as a stream does,
- ``python``: the same module's Python step path (the cells' ``step``; what ``step()`` runs when
  gradients are needed),
- ``cell``: ``torch.nn.LSTMCell``/``GRUCell``/``RNNCell`` called once per step from Python, fed its
  own last state likewise (the anchor: the target is ``ours`` at least 3x faster at B=1, H=256); a
  cell torch.nn has no equivalent of is timed against ``RNNCell`` (``LSTMCell`` for two states),
- ``int8``: the same module after ``rnnkit.quantize_step`` (int8 weights in the C++ step; issue
  #19's target: at least 1.5x faster than ``ours`` at B=1, H=256), fed its own last state,
- ``mv``: a bare ``torch.mv(W_hh, h)``: one matrix-vector product with the recurrent weight (with
  ``W_ih`` for a cell whose ``W_hh`` is a vector, IndRNN), the memory-traffic floor of one
  projection (a full LSTM step reads ``W_ih`` and ``W_hh``, so about 2x this is the floor for I = H).

Variants: the option variants listed below, then every registered cell family in its default
options (``rnnkit.cells.cell_names()``).

Each repetition times ``--steps`` consecutive steps; the script prints the median microseconds per
step and the ratios ``cell / ours`` (speed-up), ``ours / int8`` (speed-up) and ``ours / mv``.

By default a quick selection runs (``lstm,gru,rnn_tanh,mingru``, 7 repetitions); ``--full`` runs every
variant, 15 repetitions (the tables of docs/benchmarks.md). Before timing, each variant runs a few
steps of every column to estimate the run; the expected duration is printed first (``# plan: ...``).

Run (from the repository root)::

    .venv/bin/python benchmarks/streaming.py                       # B=1, I=H=256, quick selection
    .venv/bin/python benchmarks/streaming.py --full                # every variant, 15 repetitions
    .venv/bin/python benchmarks/streaming.py --batch 1 --input 256 --hidden 256 --threads 1
    .venv/bin/python benchmarks/streaming.py --cells lstm,gru --dtype bfloat16   # bf16 modules
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import torch

from rnnkit import Recurrent, quantize_step
from rnnkit._plan import add_full_flag, announce, apply_preset
from rnnkit.cells import cell_names

LISTED: dict[str, tuple[str, dict]] = {
    "lstm": ("lstm", {}),
    "lstm+layer_norm": ("lstm", {"layer_norm": True}),
    "lstm+peephole": ("lstm", {"peephole": True}),
    "lstm+zoneout": ("lstm", {"zoneout": 0.1}),
    "gru": ("gru", {}),
    "rnn_tanh": ("rnn_tanh", {}),
}
VARIANTS: dict[str, tuple[str, dict]] = {**LISTED, **{
    name: (name, {}) for name in cell_names() if name not in LISTED}}
ANCHORS = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell, "rnn_tanh": torch.nn.RNNCell}


QUICK = {"cells": "lstm,gru,rnn_tanh,mingru", "reps": 7}
FULL = {"cells": ",".join(VARIANTS), "reps": 15}
FULL_TEXT = "every variant, 15 repetitions"
PROBE_STEPS = 10


def anchor_for(cell_name: str, n_state: int) -> type[torch.nn.Module]:
    return ANCHORS.get(cell_name, torch.nn.LSTMCell if n_state > 1 else torch.nn.RNNCell)


def per_step_us(fn: Callable[[], None], steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps * 1e6


def measure(name: str, args: argparse.Namespace) -> dict[str, float]:
    cell_name, options = VARIANTS[name]
    torch.manual_seed(args.seed)
    B, I, H = args.batch, args.input, args.hidden
    dtype = getattr(torch, args.dtype)
    ours = Recurrent(cell_name, I, H, **options).eval()
    int8 = quantize_step(copy.deepcopy(ours))
    try:
        with torch.inference_mode():
            int8.step(torch.zeros(B, I))
    except ValueError:  # a cell without the C++ step (minGRU, minLSTM): no int8 step
        int8 = None
    if dtype != torch.float32:  # int8 quantizes float32 modules
        ours, int8 = ours.to(dtype), None
    x = torch.randn(B, I, dtype=dtype)
    n_state = len(ours.cell.state_sizes())
    anchor = anchor_for(cell_name, n_state)(I, H).to(dtype)
    state = tuple(torch.zeros(1, B, H, dtype=dtype) for _ in range(n_state))
    ours_state = state if n_state > 1 else state[0]
    cell_state = tuple(s[0] for s in state) if n_state > 1 else state[0][0]
    w_hh = getattr(ours, "weight_hh_l0", ours.weight_ih_l0).detach().clone()  # minGRU/minLSTM: none
    if w_hh.dim() < 2:  # an element-wise recurrence: the input projection's matrix instead
        w_hh = ours.weight_ih_l0.detach().clone()
    h = torch.randn(w_hh.shape[1], dtype=dtype)
    hx = ours._prepare_state(ours_state, B, x.unsqueeze(0), True)

    # ours and the anchor each feed their last state back in, as a stream does
    carried = {"cell": cell_state, "ours": ours_state, "int8": ours_state}

    def cell_step() -> None:
        carried["cell"] = anchor(x, carried["cell"])

    def ours_step() -> None:
        carried["ours"] = ours.step(x, carried["ours"])[1]

    def int8_step() -> None:
        carried["int8"] = int8.step(x, carried["int8"])[1]

    fns = {
        "cell": cell_step,
        "ours": ours_step,
        **({"int8": int8_step} if int8 is not None else {}),
        "python": lambda: ours._python_step(x, hx),
        "mv": lambda: torch.mv(w_hh, h),
    }
    samples: dict[str, list[float]] = {k: [] for k in fns}
    with torch.inference_mode():
        for fn in fns.values():
            per_step_us(fn, args.steps)  # warm-up
        for rep in range(args.reps):
            order = list(fns.items())
            order = order[rep % len(order):] + order[: rep % len(order)]
            for key, fn in order:
                samples[key].append(per_step_us(fn, args.steps))
    med = {k: statistics.median(v) for k, v in samples.items()}
    med["cell/ours"] = med["cell"] / med["ours"]
    med["python/ours"] = med["python"] / med["ours"]
    med["ours/mv"] = med["ours"] / med["mv"]
    med["ours/int8"] = med["ours"] / med["int8"] if "int8" in med else float("nan")
    med.setdefault("int8", float("nan"))
    return med


def expected_seconds(name: str, args: argparse.Namespace) -> float:
    """Seconds :func:`measure` will take for ``name``: its set-up plus the warm-up and ``--reps``
    repetitions of ``--steps`` steps of every column, from one probe of ``PROBE_STEPS`` steps."""
    probe = argparse.Namespace(**{**vars(args), "steps": min(args.steps, PROBE_STEPS), "reps": 1})
    start = time.perf_counter()
    med = measure(name, probe)
    step_s = sum(v for k, v in med.items() if "/" not in k and v == v) * 1e-6  # the columns (nan: no int8)
    setup = max(0.0, time.perf_counter() - start - 2 * probe.steps * step_s)
    return setup + (args.reps + 1) * args.steps * step_s


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/streaming.py", description=__doc__.splitlines()[0])
    add_full_flag(p, FULL_TEXT)
    p.add_argument("--cells", default=None,
                   help=f"comma-separated variants (default {QUICK['cells']}; --full: all: {FULL['cells']})")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--input", type=int, default=256)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--steps", type=int, default=200, help="steps per timed repetition (200)")
    p.add_argument("--reps", type=int, default=None,
                   help=f"repetitions (median; default {QUICK['reps']}; --full: {FULL['reps']})")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                   help="the modules' dtype (bfloat16: no int8 column)")
    args = p.parse_args(argv)
    quick = apply_preset(args, QUICK, FULL)
    names = [c.strip() for c in args.cells.split(",") if c.strip()]
    unknown = [c for c in names if c not in VARIANTS]
    if unknown:
        p.error(f"unknown cells {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    torch.set_num_threads(args.threads)
    print(f"# rnnkit Recurrent.step() vs torch.nn cells: B={args.batch} I={args.input} "
          f"H={args.hidden} threads={args.threads} {args.dtype} torch {torch.__version__}")
    print(f"# load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    announce(f"{len(names)} variants x {args.reps} repetitions of {args.steps} steps",
             sum(expected_seconds(name, args) for name in names), full=FULL_TEXT if quick else None)
    print(f"{'variant':<18} {'ours us':>8} {'python us':>9} {'cell us':>8} {'mv us':>7} "
          f"{'cell/ours':>9} {'python/ours':>11} {'ours/mv':>7} {'int8 us':>8} {'ours/int8':>9}")
    for name in names:
        r = measure(name, args)
        print(f"{name:<18} {r['ours']:>8.1f} {r['python']:>9.1f} {r['cell']:>8.1f} {r['mv']:>7.1f} "
              f"{r['cell/ours']:>9.2f} {r['python/ours']:>11.2f} {r['ours/mv']:>7.2f} {r['int8']:>8.1f} "
              f"{r['ours/int8']:>9.2f}", flush=True)
    print(f"# load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
