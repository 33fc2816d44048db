"""``python -m rnnkit.diagnostics demo --out DIR [--quick]``."""

from __future__ import annotations

import argparse
import sys

from rnnkit.diagnostics.demo import run_demo
from rnnkit.validation.boundary import entry_point


@entry_point  # one line and exit 2 for user errors (`--out` naming a file), as `rnnkit diagnose`
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rnnkit.diagnostics", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="vanishing and exploding gradients on the adding problem")
    demo.add_argument("--out", required=True, help="directory for the plots and summary.json")
    demo.add_argument("--quick", action="store_true", help="small batch and training (a few seconds)")
    demo.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    run_demo(args.out, quick=args.quick, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
