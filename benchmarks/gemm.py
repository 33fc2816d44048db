"""rnnkit's float32 GEMM kernels (``fused_cpu``) against ``torch.mm`` at the shapes of a layer.

For each ``(rows, gates, inputs)`` shape, in one process and interleaved, median of ``--reps``:

- ``projection``: ``x W^T`` (``fused_cpu.project``, the packed kernel) vs ``torch.mm(x, W.t())``;
- ``weight gradient``: ``dG^T X`` (``fused_cpu.project_backward``'s ``dW``, ``weight_grad.h``) vs
  ``torch.mm(dG.t(), X)``.

Prints milliseconds, GF/s and the ratio (rnnkit / torch, below 1 is faster). MKL, which torch uses
for ``torch.mm`` on x86, takes an AVX2 code path on AMD CPUs; rnnkit's kernels use AVX-512 where the
CPU has it (``RNNKIT_FUSED_NO_PACK=1`` turns them off).

By default 15 repetitions per row (quick); ``--full``: 51 (the table of docs/benchmarks.md). The
expected duration, from one call of each product per shape, is printed first.

Run (from the repository root)::

    .venv/bin/python benchmarks/gemm.py --threads 2            # quick: 15 repetitions
    .venv/bin/python benchmarks/gemm.py --threads 2 --full     # 51 repetitions
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from functools import partial

import torch

from rnnkit._plan import add_full_flag, announce, apply_preset

SHAPES = [(3200, 512, 128), (6400, 1024, 256), (12800, 2048, 512), (8192, 512, 64)]
QUICK, FULL = {"reps": 15}, {"reps": 51}
WARMUP = 3


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def products(ext, shape: tuple[int, ...]) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    """kind -> (rnnkit's kernel, torch.mm) on seeded inputs of ``shape`` (rows, gates, inputs)."""
    rows, gates, inputs = shape
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(rows, inputs, generator=gen)
    w = torch.randn(gates, inputs, generator=gen)
    dg = torch.randn(rows, gates, generator=gen)
    return {
        "projection": (partial(ext.project, x, w, None), partial(torch.mm, x, w.t())),
        "weight gradient": (partial(ext.project_backward, dg, x, w, False, True, False),
                            partial(torch.mm, dg.t(), x)),
    }


def main(argv: Sequence[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(prog="benchmarks/gemm.py", description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    add_full_flag(p, f"{FULL['reps']} repetitions")
    p.add_argument("--reps", type=int, default=None,
                   help=f"repetitions per row (median; default {QUICK['reps']}; --full: {FULL['reps']})")
    p.add_argument("--shapes", default=",".join("x".join(map(str, s)) for s in SHAPES),
                   help="ROWSxGATESxINPUTS items, comma separated")
    args = p.parse_args(argv)
    quick = apply_preset(args, QUICK, FULL)
    try:
        shapes = [tuple(int(v) for v in item.split("x")) for item in args.shapes.split(",")]
    except ValueError:
        p.error(f"--shapes: ROWSxGATESxINPUTS items, got {args.shapes!r}")
    if any(len(s) != 3 or min(s) < 1 for s in shapes):
        p.error(f"--shapes: three positive sizes per item, got {args.shapes!r}")
    from rnnkit._ext import load_extension

    ext, why = load_extension("fused_cpu")
    if ext is None:
        raise SystemExit(f"fused_cpu unavailable: {why}")
    torch.set_num_threads(args.threads)
    print(f"# rnnkit GEMM kernels vs torch.mm, threads={args.threads}, torch {torch.__version__}")
    expected = 0.0
    for shape in shapes:  # one call of each product (after one untimed), per shape
        for ours, theirs in products(ext, shape).values():
            ours(), theirs()
            expected += (WARMUP + args.reps + 1) * (seconds(ours) + seconds(theirs))
    announce(f"{2 * len(shapes)} rows x {args.reps} repetitions", expected,
             full=f"{FULL['reps']} repetitions" if quick else None)
    print(f"{'kind':<16} {'rows':>6} {'gates':>6} {'in':>5} {'ours ms':>8} {'torch ms':>9} "
          f"{'ours GF/s':>9} {'torch GF/s':>10} {'ratio':>6} {'max rel diff':>12}")
    results = []
    for rows, gates, inputs in shapes:
        pairs = products(ext, (rows, gates, inputs))
        flops = 2.0 * rows * gates * inputs
        for kind, (ours, theirs) in pairs.items():
            for _ in range(WARMUP):
                ours(), theirs()
            a, b = [], []
            for _ in range(args.reps):
                a.append(seconds(ours))
                b.append(seconds(theirs))
            ta, tb = statistics.median(a), statistics.median(b)
            mine = ours()
            mine = mine[1] if isinstance(mine, (list, tuple)) else mine
            exact = theirs().double()
            diff = ((mine.double() - exact).abs().max() / exact.abs().max().clamp_min(1e-30)).item()
            print(f"{kind:<16} {rows:>6} {gates:>6} {inputs:>5} {ta * 1e3:>8.2f} {tb * 1e3:>9.2f} "
                  f"{flops / ta / 1e9:>9.0f} {flops / tb / 1e9:>10.0f} {ta / tb:>6.2f} {diff:>12.1e}")
            results.append({"kind": kind, "shape": (rows, gates, inputs), "ours_s": ta,
                            "torch_s": tb, "ratio": ta / tb, "max_rel_diff": diff})
    return results


if __name__ == "__main__":
    main()
