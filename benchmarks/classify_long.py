"""Issue #17's long-series case: seconds per training epoch of ``rnnkit classify``'s recurrent classifier
(``--arch rnn``) with minGRU against an LSTM of the same size (hidden units, layers), on cases of at
least ``--min-length`` steps.

The cases come from a ``.ts`` file read by rnnkit's own parser (default: PLAID, which sktime ships:
``pip install -e '.[classify-data]'``, or give ``--data FILE``); only cases with ``--min-length`` or
more steps are kept, each whole (no cutting, no joining). One epoch is what ``classify train`` does per
epoch: batches of ``--batch`` cases padded to the batch's longest, ``lengths`` passed, forward, cross-
entropy, backward, Adam step. Cells alternate within every round (LSTM, minGRU, LSTM, ...), the
median over rounds is reported, and the ratio LSTM/minGRU is printed per size.

Every model's warm-up epoch runs first; the expected duration of the rounds, from those epochs, is
printed before them. The default run takes well under two minutes on 2 cores (34 s measured at load 13),
so it has no quick preset.

    python benchmarks/classify_long.py --hidden 64 128 256 512 --rounds 5 --threads 1
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from rnnkit._plan import announce


def default_data() -> Path:
    """PLAID_TRAIN.ts and PLAID_TEST.ts inside an installed sktime, found without importing it."""
    spec = importlib.util.find_spec("sktime")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("sktime is not installed: pip install -e '.[classify-data]', or give --data FILE.ts")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "PLAID"


def long_cases(paths: list[Path], min_length: int):
    from rnnkit.apps.classify.cases import Cases, class_order, encode_labels, pad
    from rnnkit.apps.classify.data import read_cases

    kept = []
    for path in paths:
        cases = read_cases(str(path), "interpolate")
        idx = np.flatnonzero(cases.lengths() >= min_length)
        kept.append(cases.select(idx))
    values = [v for c in kept for v in c.values]
    labels = [label for c in kept for label in c.require_labels()]
    classes = class_order(labels)
    lengths = np.array([len(v) for v in values])
    order = np.argsort(lengths, kind="stable")
    x, lens = pad(Cases(ids=[str(i) for i in order], values=[values[i] for i in order],
                        labels=[labels[i] for i in order], splits=None, dim_names=kept[0].dim_names,
                        source="long cases"))
    y = encode_labels([labels[i] for i in order], classes, "long cases")
    return torch.from_numpy(x), torch.from_numpy(lens), torch.from_numpy(y), classes


def epoch_seconds(model, x, lengths, y, batch: int) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    t0 = time.perf_counter()
    for start in range(0, len(x), batch):
        xb, lb, yb = x[start:start + batch], lengths[start:start + batch], y[start:start + batch]
        xb = xb[:, :int(lb.max())]
        loss = torch.nn.functional.cross_entropy(model(xb, lb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, nargs="*", help=".ts files (default: sktime's PLAID train and test)")
    p.add_argument("--min-length", type=int, default=1000)
    p.add_argument("--hidden", type=int, nargs="*", default=[64, 128, 256])
    p.add_argument("--num-layers", type=int, default=1)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from rnnkit.apps.classify.model import Classifier

    paths = args.data or [default_data() / "PLAID_TRAIN.ts", default_data() / "PLAID_TEST.ts"]
    x, lengths, y, classes = long_cases(paths, args.min_length)
    print(f"{len(x)} cases of {int(lengths.min())} to {int(lengths.max())} steps, {x.shape[2]} dims, "
          f"{len(classes)} classes, from {', '.join(p.name for p in paths)}; batch {args.batch}, "
          f"{args.threads} thread(s), load average {os.getloadavg()[0]:.2f}")
    print(f"# warming up: one epoch of each of the {2 * len(args.hidden)} models (it gives the estimate)", flush=True)
    models: dict[int, dict] = {}
    expected = 0.0
    for hidden in args.hidden:  # every model's warm-up epoch first: the estimate of its rounds
        models[hidden] = {}
        for cell in ("lstm", "mingru"):
            torch.manual_seed(0)
            models[hidden][cell] = Classifier(x.shape[2], classes, arch="rnn", cell=cell, hidden=hidden,
                                              num_layers=args.num_layers, pooling="mean")
            expected += args.rounds * epoch_seconds(models[hidden][cell], x, lengths, y, args.batch)
    announce(f"{2 * len(args.hidden)} models x {args.rounds} epochs", expected)
    for hidden in args.hidden:
        times: dict[str, list[float]] = {"lstm": [], "mingru": []}
        for _ in range(args.rounds):
            for cell, model in models[hidden].items():
                times[cell].append(epoch_seconds(model, x, lengths, y, args.batch))
        med = {cell: statistics.median(t) for cell, t in times.items()}
        print(f"hidden {hidden} x {args.num_layers} layer(s): LSTM {med['lstm']:.3f} s/epoch, minGRU "
              f"{med['mingru']:.3f} s/epoch (medians of {args.rounds}), ratio LSTM/minGRU "
              f"{med['lstm'] / med['mingru']:.2f}; load average {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
