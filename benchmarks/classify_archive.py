"""Issue #17's acceptance runs: ``rnnkit classify train`` + ``evaluate`` on the archive splits of
``../shared/data/classification/``, one training at a time, each a subprocess whose CPU seconds (user +
system of the child, ``resource.getrusage(RUSAGE_CHILDREN)``) are recorded beside its test accuracy.

    python benchmarks/classify_archive.py --out runs/acceptance --sets GunPoint ArrowHead --seeds 0 1 2 \\
        [--threads 1] [-- extra train flags, e.g. --set ensemble=3]
    python benchmarks/classify_archive.py --out runs/acceptance --table   # the table of what is recorded

Each run appends one JSON line to ``OUT/results.jsonl`` (set, label, seed, accuracies of the model and
the baseline (1-NN DTW or MiniRocket), epochs, CPU seconds, load average at the start); a run whose directory already
holds ``evaluation.json`` is skipped, so the script can be stopped and started again.

By default a quick run: GunPoint, seed 0 (one training); ``--full``: the five sets below, seeds 0 1 2
(15 trainings, an hour or more on 2 cores). An explicit ``--sets``/``--seeds`` wins over either preset.
The planned trainings are printed first; a training's length (early stopping) is not known beforehand,
so the expected duration of the rest is printed after each one.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rnnkit._plan import add_full_flag, announce, apply_preset, duration

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "classification"
QUICK = {"sets": ["GunPoint"], "seeds": [0]}
FULL = {"sets": ["GunPoint", "ItalyPowerDemand", "JapaneseVowels", "BasicMotions", "ArrowHead"], "seeds": [0, 1, 2]}
FULL_TEXT = f"sets {' '.join(FULL['sets'])}, seeds {' '.join(map(str, FULL['seeds']))}"


def child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def one_run(out: Path, dataset: str, label: str, seed: int, threads: int, extra: list[str]) -> dict | None:
    run_dir = out / f"{dataset}-{label}-s{seed}"
    if (run_dir / "evaluation.json").exists():
        return None
    data = str(DATA / f"{dataset}.csv")
    rnnkit = [sys.executable, "-m", "rnnkit.cli"]
    load = os.getloadavg()[0]
    cpu0, wall0 = child_cpu(), time.perf_counter()
    subprocess.run([*rnnkit, "classify", "train", "--out", str(run_dir), "--data", data, "--seed", str(seed),
                    "--threads", str(threads), "-q", *extra], check=True)
    cpu, wall = child_cpu() - cpu0, time.perf_counter() - wall0
    subprocess.run([*rnnkit, "classify", "evaluate", str(run_dir), "--data", data, "-q"], check=True)
    report = json.loads((run_dir / "evaluation.json").read_text())
    val = json.loads((run_dir / "validation.json").read_text())
    metrics = report["metrics"]
    model = next(iter(metrics))
    baseline = next((v["accuracy"] for k, v in metrics.items() if k.startswith("1nn-dtw")), None)
    rocket = next((v["accuracy"] for k, v in metrics.items() if k.startswith("minirocket")), None)
    row = {"set": dataset, "label": label, "seed": seed, "model": model, "accuracy": metrics[model]["accuracy"],
           "dtw": baseline, "minirocket": rocket, "epochs": val["training"]["epochs"], "train_cpu_s": round(cpu, 1),
           "train_wall_s": round(wall, 1), "load": round(load, 2), "extra": extra,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    with open(out / "results.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)
    return row


def table(out: Path) -> str:
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["set"], r["label"]), []).append(r)
    lines = ["| set | model | seeds | test accuracy per seed | mean | baseline | max CPU s per train | load |",
             "|---|---|---|---|---:|---|---:|---|"]
    for (dataset, label), rs in sorted(groups.items()):
        rs.sort(key=lambda r: r["seed"])
        acc = [r["accuracy"] for r in rs]
        loads = [r["load"] for r in rs]
        lines.append(f"| {dataset} | {label} | {','.join(str(r['seed']) for r in rs)} | "
                     f"{' / '.join(f'{a:.3f}' for a in acc)} | {statistics.mean(acc):.3f} | "
                     f"{_baseline(rs)} | "
                     f"{max(r['train_cpu_s'] for r in rs):.0f} | {min(loads):.1f}-{max(loads):.1f} |")
    return "\n".join(lines)


def _baseline(rows: list[dict]) -> str:
    """The baseline column: MiniRocket's or 1-NN DTW's test accuracy (fitted on every training case,
    the same for every seed of a set)."""
    if rows[0].get("minirocket") is not None:
        return f"MiniRocket {rows[0]['minirocket']:.3f}"
    return "-" if rows[0]["dtw"] is None else f"1-NN DTW {rows[0]['dtw']:.3f}"


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    add_full_flag(p, FULL_TEXT)
    p.add_argument("--sets", nargs="*", default=None,
                   help=f"default {' '.join(QUICK['sets'])}; --full: {' '.join(FULL['sets'])}")
    p.add_argument("--seeds", nargs="*", type=int, default=None, help="default 0; --full: 0 1 2")
    p.add_argument("--label", default="default", help="names the runs of these extra flags")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--table", action="store_true")
    args = p.parse_args(argv)
    if args.table:
        print(table(args.out))
        return
    quick = apply_preset(args, QUICK, FULL)
    args.out.mkdir(parents=True, exist_ok=True)
    planned = [(d, s) for d in args.sets for s in args.seeds
               if not (args.out / f"{d}-{args.label}-s{s}" / "evaluation.json").exists()]
    announce(f"{len(planned)} trainings ({' '.join(args.sets)} x seeds {' '.join(map(str, args.seeds))}; "
             f"{len(args.sets) * len(args.seeds) - len(planned)} already recorded), each until early stopping: "
             "the estimate follows the first", full=FULL_TEXT if quick else None)
    start = time.perf_counter()
    for done, (dataset, seed) in enumerate(planned, 1):
        one_run(args.out, dataset, args.label, seed, args.threads, extra)
        if done < len(planned):
            left = (time.perf_counter() - start) / done * (len(planned) - done)
            print(f"# {done} of {len(planned)} trainings done: about {duration(left)} left (estimate)", flush=True)


if __name__ == "__main__":
    main()
