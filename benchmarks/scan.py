"""Speed and peak memory of the parallel-in-time cells (minGRU, minLSTM) on CPU.

For each T, one layer (B=8, I=H=256 by default) runs forward + ``output.sum().backward()`` (train
mode, the input requiring grad, gradients cleared outside the timed region) as:

- ``gru``: ``torch.nn.GRU`` (the anchor),
- ``mingru`` / ``minlstm``: ``rnnkit.Recurrent(cell, backend="scan")`` (one input GEMM + the fused
  C++ linear recurrence, forward and backward),
- ``mingru_ref`` / ``minlstm_ref``: the same cells on ``backend="reference"`` (the sequential formula,
  a Python loop over ``cell.step`` with autograd).

Timing: all variants in one process, interleaved (each repetition runs every variant once), median
of ``--reps`` repetitions after ``--warmup``; ratios are ``anchor / ours`` (speed-ups, > 1 is faster).
The reference loop is skipped above ``--ref-max-t``.

Peak memory (``--memory``): one fresh subprocess per (variant, T) builds the module and inputs, runs
one warm-up forward+backward at T=8, records the current resident set size (``/proc/self/statm``),
resets the peak (``echo 5 > /proc/self/clear_refs``: a child's ``ru_maxrss`` starts at its parent's
peak, it survives exec), runs one forward+backward at full T and reports the peak (``VmHWM``) minus
that: the extra peak resident memory of that forward+backward (activations saved
for backward, workspaces, gradients). It
is the process's real peak, so it includes allocator slack; torch has no CPU allocator statistics
(``tracemalloc`` does not see torch's allocations).

By default a quick run: T = 256,1024, 3 repetitions; ``--full``: T = 256,1024,4096,16384, 5
repetitions (the tables of docs/benchmarks.md). The expected duration, from each variant on a
short prefix, is printed first.

Run (from the repository root)::

    .venv/bin/python benchmarks/scan.py                        # quick: T = 256,1024
    .venv/bin/python benchmarks/scan.py --ts 256,1024,4096,16384 --reps 5 --memory --markdown
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

import rnnkit
from rnnkit._plan import add_full_flag, announce, apply_preset

VARIANTS = ("gru", "mingru", "minlstm", "mingru_ref", "minlstm_ref")
QUICK = {"ts": "256,1024", "reps": 3}
FULL = {"ts": "256,1024,4096,16384", "reps": 5}
FULL_TEXT = f"T = {FULL['ts']}, {FULL['reps']} repetitions"
PROBE_T = 32
MEMORY_CHILD_S = 5.0  # a --memory subprocess: an interpreter importing torch, then one forward+backward


def build(variant: str, I: int, H: int) -> nn.Module:
    torch.manual_seed(0)
    if variant == "gru":
        return nn.GRU(I, H)
    cell, _, ref = variant.partition("_")
    return rnnkit.Recurrent(cell, I, H, backend="reference" if ref else "scan")


def fwd_bwd(module: nn.Module, x: torch.Tensor) -> float:
    t0 = time.perf_counter()
    out, _ = module(x)
    out.sum().backward()
    elapsed = time.perf_counter() - t0
    module.zero_grad(set_to_none=True)
    x.grad = None
    return elapsed


def memory_child(variant: str, T: int, B: int, H: int) -> int:
    """Extra peak RSS (bytes) of one forward+backward, in this (fresh) process."""
    module = build(variant, H, H)
    x = torch.randn(T, B, H, requires_grad=True)
    fwd_bwd(module, x[:8].detach().requires_grad_())
    before = current_rss()
    try:  # reset the peak (VmHWM): ru_maxrss survives exec, so it starts at the parent's peak
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        fwd_bwd(module, x)
        with open("/proc/self/status") as f:
            after = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) * 1024
    except OSError:
        fwd_bwd(module, x)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return max(0, after - before)


def current_rss() -> int:
    """Resident set size now (bytes), from /proc/self/statm."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure_memory(variant: str, T: int, B: int, H: int) -> int | None:
    cmd = [sys.executable, __file__, "--threads", str(torch.get_num_threads()), "--memory-child",
           variant, str(T), str(B), str(H)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        return None
    return int(proc.stdout.strip().splitlines()[-1])


def active_variants(variants: list[str], T: int, ref_max_t: int) -> list[str]:
    """The variants timed at ``T``: the reference loops only up to ``ref_max_t``."""
    return [v for v in variants if not (v.endswith("_ref") and ref_max_t < T)]


def probe_seconds(variant: str, B: int, H: int) -> float:
    """Seconds per time step of one forward+backward, from a ``PROBE_T``-step run (after one untimed)."""
    module = build(variant, H, H)
    x = torch.randn(PROBE_T, B, H, requires_grad=True)
    fwd_bwd(module, x)
    return fwd_bwd(module, x) / PROBE_T


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_full_flag(p, FULL_TEXT)
    p.add_argument("--ts", default=None, help=f"sequence lengths (default {QUICK['ts']}; --full: {FULL['ts']})")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--reps", type=int, default=None,
                   help=f"repetitions (median; default {QUICK['reps']}; --full: {FULL['reps']})")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--ref-max-t", type=int, default=1024)
    p.add_argument("--memory", action="store_true", help="peak memory per variant (subprocesses)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--memory-child", nargs=4, metavar=("VARIANT", "T", "B", "H"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        v, T, B, H = args.memory_child
        print(memory_child(v, int(T), int(B), int(H)))
        return []
    quick = apply_preset(args, QUICK, FULL)
    B, H = args.batch, args.hidden
    variants = [v.strip() for v in args.variants.split(",")]
    ts = [int(t) for t in args.ts.split(",")]
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, torch "
          f"{torch.__version__}, threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.1f}",
          flush=True)
    per_rep = {v: probe_seconds(v, B, H) for v in variants}  # seconds per step
    runs = [(T, v) for T in ts for v in active_variants(variants, T, args.ref_max_t)]
    expected = sum(per_rep[v] * T * (args.warmup + args.reps) for T, v in runs)
    if args.memory:
        expected += sum(MEMORY_CHILD_S + per_rep[v] * T for T in ts for v in variants
                        if v in active_variants(variants, T, args.ref_max_t) or not v.endswith("_ref"))
    announce(f"{len(runs)} (T, variant) rows" + (" and their peak memory" if args.memory else ""), expected,
             full=FULL_TEXT if quick else None)
    rows = []
    for T in ts:
        active = active_variants(variants, T, args.ref_max_t)
        modules = {v: build(v, H, H) for v in active}
        x = torch.randn(T, B, H, requires_grad=True)
        times: dict[str, list[float]] = {v: [] for v in active}
        for rep in range(args.warmup + args.reps):
            for v in active:
                dt = fwd_bwd(modules[v], x)
                if rep >= args.warmup:
                    times[v].append(dt)
        med = {v: statistics.median(ts) for v, ts in times.items()}
        for v in variants:
            row = {"T": T, "B": B, "H": H, "variant": v, "median_s": med.get(v),
                   "samples_s": times.get(v)}
            if v in med and "gru" in med:
                row["speedup_vs_gru"] = med["gru"] / med[v]
            ref = f"{v}_ref"
            if v in med and ref in med:
                row["speedup_vs_ref"] = med[ref] / med[v]
            if args.memory and (v in med or not v.endswith("_ref")):
                row["peak_extra_bytes"] = measure_memory(v, T, B, H)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"# load at end {os.getloadavg()[0]:.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    if args.markdown:
        print(markdown(rows))
    return rows


def markdown(rows: list[dict]) -> str:
    gru_mem = {r["T"]: r.get("peak_extra_bytes") for r in rows if r["variant"] == "gru"}
    out = ["| T | variant | median fwd+bwd (ms) | speed-up vs nn.GRU | speed-up vs reference "
           "| extra peak RSS (MiB) | memory vs nn.GRU |", "|" + "---|" * 7]
    for r in rows:
        if r["median_s"] is None:
            continue
        mem = r.get("peak_extra_bytes")
        g = gru_mem.get(r["T"])

        def f(v, fmt):
            return format(v, fmt) if v is not None else "-"

        out.append(
            f"| {r['T']} | {r['variant']} | {r['median_s'] * 1e3:.1f} | {f(r.get('speedup_vs_gru'), '.2f')} "
            f"| {f(r.get('speedup_vs_ref'), '.1f')} | {f(mem / 2**20 if mem is not None else None, '.0f')} "
            f"| {f(mem / g if mem is not None and g else None, '.2f')} |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    main()
