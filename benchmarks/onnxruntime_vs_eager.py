"""onnxruntime vs rnnkit eager for an exported model: ``python benchmarks/onnxruntime_vs_eager.py``.

For a 2-layer LSTM (default) at a few shapes, the sequence graph against ``module(x, state)`` under
``torch.inference_mode`` and the step graph against ``module.step``, both on the same number of
threads. Runs are interleaved (ort, eager, ort, eager, ...) so load changes hit both; the table gives
medians and the median of the per-round ratios.

The default run takes well under two minutes on 2 cores (33 s measured at load 8), so it has no quick
preset: the models are exported and every function is called once before the expected duration is
printed (``# plan: ...``); then the rounds run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

import rnnkit
from rnnkit._plan import announce
from rnnkit.deploy.onnx_export import export_onnx, onnx_session


def _time(fn: Callable[[], object], inner: int) -> float:
    start = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - start) / inner


def _compare(ort_fn: Callable[[], object], eager_fn: Callable[[], object], rounds: int, inner: int
             ) -> tuple[float, float, float]:
    ort_fn()
    eager_fn()  # warm-up (rnnkit builds its kernels/steppers on the first call)
    a, b = [], []
    for _ in range(rounds):
        a.append(_time(ort_fn, inner))
        b.append(_time(eager_fn, inner))
    ratio = statistics.median(x / y for x, y in zip(a, b, strict=True))
    return statistics.median(a), statistics.median(b), ratio


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", default="lstm")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lowering", default="auto", choices=("auto", "scan"))
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="a cell option, e.g. layer_norm=true (repeatable)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--shapes", default="100x1x64x128,100x16x128x128,200x64x256x256",
                        help="TxBxIxH, comma-separated")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    shapes = _parse_shapes(args.shapes)
    options = {k: _value(v) for k, v in (o.split("=", 1) for o in args.option)}
    print(f"# {args.cell} {options or ''}, {args.layers} layers, lowering {args.lowering}, "
          f"{args.threads} thread(s), torch {torch.__version__}, "
          f"onnxruntime {_ort_version()}; medians of {args.rounds} interleaved rounds")
    rows = []  # (graph, T, B, I, H, ort function, eager function, calls per timing)
    with tempfile.TemporaryDirectory() as tmp:
        for T, B, I, H in shapes:
            torch.manual_seed(0)
            m = rnnkit.Recurrent(args.cell, I, H, args.layers, **options).eval()
            x = torch.randn(T, B, I)
            state = tuple(torch.zeros(args.layers, B, n) for n in m._state_sizes)
            st = state if len(state) > 1 else state[0]
            seq_path, step_path = Path(tmp) / "seq.onnx", Path(tmp) / "step.onnx"
            export_onnx(m, seq_path, lowering=args.lowering)
            export_onnx(m, step_path, step=True, lowering=args.lowering)
            seq, step = onnx_session(seq_path), onnx_session(step_path)
            names = ("h0", "c0")
            feeds = {"input": x.numpy(), **{k: s.numpy() for k, s in zip(names, state, strict=False)}}
            step_feeds = {"input": x[0].numpy(), **{k: s.numpy() for k, s in zip(names, state, strict=False)}}

            def eager_seq(m=m, x=x, st=st):
                with torch.inference_mode():
                    return m(x, st)

            def eager_step(m=m, x_t=x[0], st=st):
                with torch.inference_mode():
                    return m.step(x_t, st)

            inner = max(1, min(1000, int(2e7 // (T * B * H * H * args.layers))))  # capped for tiny shapes
            rows.append(("sequence", T, B, I, H, lambda s=seq, f=feeds: s.run(None, f), eager_seq, inner))
            rows.append(("step", 1, B, I, H, lambda s=step, f=step_feeds: s.run(None, f), eager_step, 200))
    expected = 0.0
    for *_, ort_fn, eager_fn, inner in rows:  # one call each after a warm-up: what the rounds repeat
        ort_fn(), eager_fn()
        expected += (args.rounds * inner + 1) * (_time(ort_fn, 1) + _time(eager_fn, 1))
    announce(f"{len(rows)} rows x {args.rounds} rounds", expected)
    print(f"{'graph':8} {'T':>4} {'B':>3} {'I':>4} {'H':>4} {'ort ms':>9} {'eager ms':>9} {'ort/eager':>9}")
    for graph, T, B, I, H, ort_fn, eager_fn, inner in rows:
        o, e, r = _compare(ort_fn, eager_fn, args.rounds, inner)
        print(f"{graph:8} {T!s:>4} {B:3d} {I:4d} {H:4d} {o * 1e3:9.3f} {e * 1e3:9.3f} {r:9.2f}")


def _parse_shapes(text: str) -> list[tuple[int, int, int, int]]:
    shapes = []
    for part in text.split(","):
        dims = [int(d) for d in part.split("x")]
        if len(dims) != 4:
            raise SystemExit(f"a shape is TxBxIxH, got {part!r}")
        shapes.append((dims[0], dims[1], dims[2], dims[3]))
    return shapes


def _value(text: str) -> bool | int | float | str:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


if __name__ == "__main__":
    main()
