"""torch.compile of a model built from rnnkit layers against the same model in eager mode.

Models: ``lstm2`` (a 2-layer ``rnnkit.LSTM`` and a ``Linear`` head on every step) and ``gru_ln`` (a
2-layer ``rnnkit.Recurrent("gru", layer_norm=True)`` with the same head). For each model and shape,
in one process:

- the compile time: ``torch._dynamo.reset()``, then the first call of ``torch.compile(model)``
  (tracing, AOTAutograd, Inductor codegen) minus the time of one eager call;
- eager and compiled interleaved (eager, compiled, eager, ...) for ``--rounds`` rounds of ``--inner``
  calls each; the medians and the median of the per-round ratios ``compiled / eager`` (< 1: compiled
  is faster).

Modes: ``infer`` (forward under ``torch.inference_mode``) and ``train`` (forward, a mean-square loss,
backward). The graph breaks of each compiled model are counted with ``torch._dynamo.explain``.

Run (from the repository root)::

    .venv/bin/python benchmarks/compile.py                       # both models, both modes
    .venv/bin/python benchmarks/compile.py --models lstm2 --modes infer --shapes 100x16x128x128
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

import rnnkit


class SequenceModel(nn.Module):
    """A recurrent stack and a linear head applied to every time step's output."""

    def __init__(self, recurrent: nn.Module, hidden: int, outputs: int = 10) -> None:
        super().__init__()
        self.recurrent = recurrent
        self.head = nn.Linear(hidden, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.recurrent(x)
        return self.head(y)


MODELS: dict[str, Callable[[int, int], nn.Module]] = {
    "lstm2": lambda i, h: SequenceModel(rnnkit.LSTM(i, h, num_layers=2), h),
    "gru_ln": lambda i, h: SequenceModel(rnnkit.Recurrent("gru", i, h, 2, layer_norm=True), h),
}


def _call(model: nn.Module, x: torch.Tensor, mode: str) -> Callable[[], object]:
    if mode == "infer":
        def run() -> object:
            with torch.inference_mode():
                return model(x)
    else:
        def run() -> object:
            model.zero_grad(set_to_none=True)
            loss = model(x).square().mean()
            loss.backward()
            return loss
    return run


def _time(fn: Callable[[], object], inner: int) -> float:
    start = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - start) / inner


def graph_breaks(model: nn.Module, x: torch.Tensor, mode: str) -> int:
    """How many graph breaks torch._dynamo finds in a forward call, with autograd off (``infer``) or
    on (``train``: the kernels' autograd Functions are not custom operators, so Dynamo breaks there)."""
    torch._dynamo.reset()
    with torch.set_grad_enabled(mode == "train"):
        return torch._dynamo.explain(model)(x).graph_break_count


def measure(name: str, mode: str, shape: tuple[int, int, int, int], rounds: int, inner: int) -> dict:
    T, B, I, H = shape
    torch.manual_seed(0)
    model = MODELS[name](I, H)
    if mode == "infer":
        model.eval()
    x = torch.randn(T, B, I)
    eager = _call(model, x, mode)
    eager()  # warm-up: rnnkit builds its kernels on the first call
    eager_once = _time(eager, 1)
    torch._dynamo.reset()
    compiled_model = torch.compile(model)
    compiled = _call(compiled_model, x, mode)
    start = time.perf_counter()
    compiled()
    compile_s = time.perf_counter() - start - eager_once
    compiled()
    with torch.no_grad():
        diff = (compiled_model(x) - model(x)).abs().max().item()
    e_times, c_times = [], []
    for _ in range(rounds):
        e_times.append(_time(eager, inner))
        c_times.append(_time(compiled, inner))
    ratio = statistics.median(c / e for c, e in zip(c_times, e_times, strict=True))
    return {"model": name, "mode": mode, "shape": shape, "compile_s": compile_s,
            "eager_ms": statistics.median(e_times) * 1e3, "compiled_ms": statistics.median(c_times) * 1e3,
            "ratio": ratio, "max_abs_diff": diff, "graph_breaks": graph_breaks(model, x, mode)}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--modes", default="infer,train")
    parser.add_argument("--shapes", default="100x16x128x128,100x64x256x256", help="TxBxIxH, comma-separated")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--inner", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    shapes = [tuple(int(d) for d in s.split("x")) for s in args.shapes.split(",")]
    for s in shapes:
        if len(s) != 4:
            raise SystemExit(f"a shape is TxBxIxH, got {'x'.join(map(str, s))!r}")
    print(f"# command: python benchmarks/compile.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"# torch {torch.__version__}, {args.threads} thread(s); medians of {args.rounds} interleaved rounds "
          f"of {args.inner} calls; ratio = compiled/eager (median of per-round ratios)")
    print("| model | mode | T | B | I | H | eager ms | compiled ms | ratio | compile s | graph breaks | max diff |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for name in args.models.split(","):
        if name not in MODELS:
            raise SystemExit(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
        for mode in args.modes.split(","):
            if mode not in ("infer", "train"):
                raise SystemExit(f"unknown mode {mode!r}; choose infer or train")
            for shape in shapes:
                r = measure(name, mode, shape, args.rounds, args.inner)  # type: ignore[arg-type]
                rows.append(r)
                T, B, I, H = shape
                print(f"| {name} | {mode} | {T} | {B} | {I} | {H} | {r['eager_ms']:.2f} | {r['compiled_ms']:.2f} "
                      f"| {r['ratio']:.3f} | {r['compile_s']:.1f} | {r['graph_breaks']} | {r['max_abs_diff']:.1e} |",
                      flush=True)
    return rows


if __name__ == "__main__":
    main()
