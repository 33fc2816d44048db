"""Speed of one git revision against another: the same benchmark, alternating rounds, ratios printed.

A refactoring (issue #18's redesign, a kernel split) must not make rnnkit slower. Two revisions
cannot share one Python process (same package name), so this script checks each out as a git
worktree (kept under the temp folder for the next run; each revision's extensions build into their
own cache folder on first import) and runs the benchmark in the two worktrees in turn: before,
after, before, after, ... Each round is one benchmark process that already measures rnnkit against
its torch.nn anchor interleaved, so a round's ``ours / anchor`` ratio is robust to the machine's
drift between rounds; the printed figure per row is

    median over rounds of  ratio(after) / ratio(before)

(below 1: the after revision is faster), with the spread of the per-round figures.

    .venv/bin/python benchmarks/revisions.py --before e02b931 --after HEAD --rounds 4 \\
        executors --grid 100x32x128x128 --cells gru --backends fused_cpu --modes fwdbwd
    .venv/bin/python benchmarks/revisions.py --before e02b931 --after HEAD --rounds 4 streaming --reps 15

``executors`` rows come from its ``--json`` output (the ratio column); ``streaming`` rows from its
printed table (the ``cell/ours`` column, inverted so that below 1 is again faster).

The planned work (2 x ``--rounds`` benchmark processes) is printed first, and the expected duration of
the rest after each round. Give the benchmark its selection explicitly (``--grid``, ``--cells``, ...):
both benchmarks run a quick selection by default since issue #25, and a revision older than that its
full grid.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from rnnkit._plan import announce, duration

REPO = Path(__file__).resolve().parents[1]


def worktree(revision: str) -> Path:
    """A worktree of ``revision`` under the temp folder, reused between runs so that its extensions
    (cached by source location and content) build once; ``git worktree prune`` after deleting it."""
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", revision], check=True,
                         capture_output=True, text=True).stdout.strip()
    folder = Path(tempfile.gettempdir()) / "rnnkit-revisions" / sha
    if not (folder / "src").is_dir():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(folder), sha],
                       check=True, capture_output=True)
    return folder


def checked(command: Sequence[str], tree: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed in {tree}:\n{done.stderr[-2000:]}")
    return done


def executor_ratios(payload: dict) -> dict[str, float]:
    """``benchmarks/executors.py --json`` output: row name -> ours / torch.nn time ratio."""
    return {f"{r['variant']} {r['backend']} {r['mode']} {r['T']}x{r['B']}x{r['I']}x{r['H']}": r["ratio"]
            for r in payload["rows"] if r["status"] == "ok"}


def streaming_ratios(stdout: str) -> dict[str, float]:
    """``benchmarks/streaming.py``'s printed table: variant -> ours / torch.nn cell time ratio."""
    lines = [line for line in stdout.splitlines() if line and not line.startswith("#")]
    header = lines[0].split()
    # the time columns' headers are two words ("ours us"), their values one
    column = header.index("cell/ours") - header[:header.index("cell/ours")].count("us")
    return {fields[0]: 1.0 / float(fields[column]) for fields in (line.split() for line in lines[1:])}


def run_round(tree: Path, bench: str, extra: Sequence[str], scratch: Path) -> dict[str, float]:
    """One benchmark process in ``tree``; returns ``row name -> ours / anchor`` time ratio."""
    env = dict(os.environ, PYTHONPATH=str(tree / "src"))
    command = [sys.executable, str(tree / "benchmarks" / f"{bench}.py"), *extra]
    if bench == "executors":
        out = scratch / "round.json"
        checked([*command, "--json", str(out)], tree, env)
        return executor_ratios(json.loads(out.read_text()))
    return streaming_ratios(checked(command, tree, env).stdout)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", required=True, help="git revision measured first in each pair")
    parser.add_argument("--after", default="HEAD", help="git revision compared with it (HEAD)")
    parser.add_argument("--rounds", type=int, default=4, help="pairs of benchmark processes (4)")
    parser.add_argument("bench", choices=("executors", "streaming"))
    parser.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments for the benchmark")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rnnkit-revisions-") as scratch_name:
        scratch = Path(scratch_name)
        trees = {"before": worktree(args.before), "after": worktree(args.after)}
        per_round: list[dict[str, tuple[float, float]]] = []
        print(f"# {args.bench} {' '.join(args.bench_args)}: before={args.before} after={args.after}, "
              f"{args.rounds} rounds; load average {os.getloadavg()[0]:.2f} at start", flush=True)
        announce(f"{2 * args.rounds} benchmark processes ({args.rounds} rounds x 2 revisions; the first of each "
                 "revision may build its C++ extensions); the estimate follows the first round")
        start = time.perf_counter()
        for index in range(args.rounds):
            before = run_round(trees["before"], args.bench, args.bench_args, scratch)
            after = run_round(trees["after"], args.bench, args.bench_args, scratch)
            per_round.append({k: (before[k], after[k]) for k in before if k in after})
            left = (time.perf_counter() - start) / (index + 1) * (args.rounds - index - 1)
            print(f"# round {index + 1} done, load average {os.getloadavg()[0]:.2f}"
                  + (f"; about {duration(left)} left (estimate)" if index + 1 < args.rounds else ""), flush=True)
    print(f"{'row':<52} {'before':>7} {'after':>7} {'after/before':>12} {'per-round range':>16}")
    for key in per_round[0]:
        pairs = [r[key] for r in per_round if key in r]
        ratios = [a / b for b, a in pairs]
        print(f"{key:<52} {statistics.median(b for b, _ in pairs):>7.3f} "
              f"{statistics.median(a for _, a in pairs):>7.3f} {statistics.median(ratios):>12.3f} "
              f"{min(ratios):>7.3f}-{max(ratios):<8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
