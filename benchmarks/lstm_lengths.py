"""Variable-length LSTM training on CPU: ``rnnkit.Recurrent("lstm", ..., lengths=)`` against torch.nn.LSTM.

Forward + ``output.sum().backward()`` of one LSTM layer at (T, B, I, H) with per-sequence lengths
spread evenly from ``--min-length`` to T (the shape of ``benchmarks/classify_long.py``: PLAID's 8
cases of 1,000-1,344 steps, batch 8). Timed in the same process, interleaved per repetition, median:

- ``torch packed``: torch.nn.LSTM on ``pack_padded_sequence`` (the anchor a variable-length user has);
- ``torch padded``: torch.nn.LSTM on the padded batch, no lengths (oneDNN; the padded steps run too);
- ``rnnkit auto``: rnnkit with ``lengths=`` and the default backend (what ``classify`` runs);
- ``rnnkit native`` (``--with-native``): rnnkit with ``backend="native"``, i.e. torch's packed
  kernel, which auto chose at B x H > 2048 before the fix (slow: minutes per repetition at H=512).

Ratios are printed against ``torch packed``. By default a quick run at H=128; ``--full``: H=512 (the
figure of docs/benchmarks.md, minutes on 2 cores). The expected duration, from every run on a
64-step prefix, is printed first.

    python benchmarks/lstm_lengths.py                       # quick: H=128
    python benchmarks/lstm_lengths.py --T 1344 --min-length 1000 --batch 8 --hidden 512 --reps 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from functools import partial

import torch
from torch.nn.utils.rnn import pack_padded_sequence

import rnnkit
from rnnkit._plan import add_full_flag, announce, apply_preset

QUICK = {"hidden": [128]}
FULL = {"hidden": [512]}
PROBE_T = 64


def _torch_packed(anchor, x, lengths) -> None:
    out, _ = anchor(pack_padded_sequence(x, lengths, enforce_sorted=False))
    out.data.sum().backward()


def _torch_padded(anchor, x) -> None:
    out, _ = anchor(x)
    out.sum().backward()


def _rnnkit(m, x, lengths) -> None:
    out, _ = m(x, lengths=lengths)
    out.sum().backward()


def make_runs(args: argparse.Namespace, H: int, x: torch.Tensor, lengths: torch.Tensor):
    """(rnnkit modules, name -> one forward+backward) at hidden size ``H`` on ``x``."""
    I = x.shape[2]
    torch.manual_seed(0)
    anchor = torch.nn.LSTM(I, H)
    ours = {"rnnkit auto": rnnkit.Recurrent("lstm", I, H)}
    if args.with_native:
        ours["rnnkit native"] = rnnkit.Recurrent("lstm", I, H, backend="native")
    for m in ours.values():
        m.load_state_dict(anchor.state_dict())
    runs = {"torch packed": partial(_torch_packed, anchor, x, lengths),
            "torch padded": partial(_torch_padded, anchor, x),
            **{name: partial(_rnnkit, m, x, lengths) for name, m in ours.items()}}
    return ours, runs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--T", type=int, default=1344)
    p.add_argument("--min-length", type=int, default=1000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--input", type=int, default=1)
    add_full_flag(p, "H=512")
    p.add_argument("--hidden", type=int, nargs="*", default=None, help="hidden sizes (default 128; --full: 512)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--with-native", action="store_true", help="also time rnnkit backend='native'")
    args = p.parse_args()
    quick = apply_preset(args, QUICK, FULL)
    torch.set_num_threads(args.threads)
    T, B, I = args.T, args.batch, args.input
    lengths = torch.linspace(args.min_length, T, B).round().to(torch.int64)
    print(f"T={T} B={B} I={I}, lengths {lengths.tolist()}, {args.threads} thread(s), "
          f"torch {torch.__version__}, load average {os.getloadavg()[0]:.2f}", flush=True)
    expected = 0.0
    for H in args.hidden:  # every run on a PROBE_T-step prefix (after one untimed), scaled to T
        short = min(T, PROBE_T)
        probe_lengths = (lengths * short / T).round().clamp(min=1).to(torch.int64)
        for run in make_runs(args, H, torch.randn(short, B, I), probe_lengths)[1].values():
            run()
            t0 = time.perf_counter()
            run()
            expected += (time.perf_counter() - t0) * T / short * (1 + args.reps)
    announce(f"{len(args.hidden)} hidden size(s) x {args.reps} repetitions", expected,
             full="H=512" if quick else None)
    for H in args.hidden:
        ours, runs = make_runs(args, H, torch.randn(T, B, I), lengths)
        plan = ours["rnnkit auto"].plan(batch=B, has_lengths=True)
        print(f"H={H}: rnnkit auto runs {plan.executors[0][0].name}", flush=True)
        for run in runs.values():  # warm-up (the packed ones once only: they are slow)
            run()
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.reps):
            for name, run in runs.items():
                t0 = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - t0)
        base = statistics.median(times["torch packed"])
        for name, t in times.items():
            med = statistics.median(t)
            print(f"H={H} {name:14s} {med:8.3f} s  ratio vs torch packed {med / base:.3f}", flush=True)
        print(f"load average {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
