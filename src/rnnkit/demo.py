"""``python -m rnnkit.demo`` (``make demo``): why gated recurrent cells exist, in about two minutes.

Four one-layer recurrent networks learn the adding problem (:mod:`rnnkit.tasks.adding`): read a
sequence of random numbers, two of them marked, and output the sum of the two marked numbers at the
end. The first mark falls anywhere in the first half, so the network must carry that number across
up to ``T`` steps. Always answering 1.0 scores an MSE of 1/6 ≈ 0.167: the baseline to beat.

- Elman (``rnn_tanh``): the plain recurrent network, h_t = tanh(W_ih x_t + W_hh h_{t-1} + b).
- LSTM: the same with a gated, additive memory cell (Hochreiter & Schmidhuber 1997).
- LSTM with chrono init: its forget- and input-gate biases set so that memory time scales span 1
  to ``T`` steps from the start (Tallec & Ollivier 2018).
- GRU: a lighter gated cell (Cho et al. 2014).

Each model is ``rnnkit.Recurrent(cell, 2, H)`` followed by a linear head on the last output, trained
with Adam and gradient clipping on fresh batches for the same wall-clock budget, from the same seed
and on the same data stream, then scored on a fixed held-out set.

Each model trains for a fixed number of steps (``--steps``, default :data:`DEFAULT_STEPS`), so a seed
gives the same curves on every machine, only the time differs; ``--seconds-per-model N`` trains for a
wall-clock budget instead. The claims above hold for seeds 0-4 (re-checked by
``benchmarks/docs_figures.py --check demo-cells``, docs/benchmarks.md). Other options: ``--quick``
(a few seconds, for tests), ``--seq-len``,
``--hidden``, ``--batch``, ``--lr``, ``--seed``, ``--threads`` (default 2, or 1 on a busy machine:
see :func:`auto_threads`).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from rnnkit.layers.recurrent import Recurrent
from rnnkit.tasks.adding import ADDING_BASELINE_MSE, adding_batch

#: A run "beats the baseline" when its held-out MSE is below this fraction of 1/6. Half is far
#: outside the noise of the held-out estimate (about 0.01 for 512 sequences).
BEAT_FRACTION = 0.5
#: Steps per model: the slowest of seeds 0-4 (the LSTM of seed 1) first beats the baseline at step
#: 1225; 2000 leaves a margin (docs/benchmarks.md, "the demo's claims").
DEFAULT_STEPS = 2000


@dataclass(frozen=True)
class ModelSpec:
    """One contestant: a label, a marker letter for the chart, and the ``Recurrent`` arguments."""

    label: str
    marker: str
    cell: str
    blurb: str
    options: dict = field(default_factory=dict)


@dataclass
class Config:
    seq_len: int = 100
    hidden: int = 64
    batch: int = 64
    lr: float = 1e-2
    clip: float = 1.0
    seconds_per_model: float = 25.0  # the budget when ``steps`` is None
    steps: int | None = DEFAULT_STEPS
    eval_every: int = 25
    eval_size: int = 512
    seed: int = 0
    report_every_s: float = 5.0
    threads: int | None = None  # None: 2, or 1 on a busy machine (see auto_threads)
    threads_note: str = ""


@dataclass
class Result:
    spec: ModelSpec
    executor: str
    steps: int = 0
    seconds: float = 0.0
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, held-out MSE)

    @property
    def final_mse(self) -> float:
        return self.curve[-1][1]

    @property
    def beats_baseline(self) -> bool:
        return self.final_mse < BEAT_FRACTION * ADDING_BASELINE_MSE

    @property
    def first_beat(self) -> int | None:
        """The first evaluated step whose held-out MSE was below the threshold."""
        return next((s for s, m in self.curve if m < BEAT_FRACTION * ADDING_BASELINE_MSE), None)


def contestants(cfg: Config) -> list[ModelSpec]:
    return [
        ModelSpec("Elman (rnn_tanh)", "E", "rnn_tanh",
                  "the plain recurrent net, h_t = tanh(W_ih x_t + W_hh h_t-1 + b)"),
        ModelSpec("LSTM", "L", "lstm", "a memory cell c_t behind input, forget and output gates"),
        ModelSpec("LSTM, chrono init", "C", "lstm",
                  f"forget-gate biases set for memory spans of 1 to {cfg.seq_len} steps "
                  "(Tallec & Ollivier 2018)",
                  {"init": "chrono", "chrono_tmax": cfg.seq_len}),
        ModelSpec("GRU", "G", "gru", "an update gate mixes the old state with a new candidate"),
    ]


class AddingModel(nn.Module):
    """A recurrent layer reading the sequence, and a linear head on its last output."""

    def __init__(self, spec: ModelSpec, hidden: int) -> None:
        super().__init__()
        self.rnn = Recurrent(spec.cell, 2, hidden, **spec.options)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)  # (T, B, H)
        return self.head(out[-1]).squeeze(-1)  # (B,)


def describe_executor(rnn: Recurrent) -> str:
    """One line: which executor runs the layer (see ``rnnkit.explain`` for the reasons)."""
    plan = rnn.plan()
    names = sorted({ex.name for per_layer in plan.executors for ex in per_layer})
    if plan.whole_stack:
        return f"{names[0]} (whole stack in one call)"
    return ", ".join(names) + " (per layer)"


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    mse = torch.mean((model(x) - y) ** 2).item()
    model.train()
    return mse


def train_one(spec: ModelSpec, cfg: Config, held_out: tuple[torch.Tensor, torch.Tensor],
              log=print) -> Result:
    """Train one contestant on fresh batches until its budget is spent; score on ``held_out``."""
    torch.manual_seed(cfg.seed)  # same initial draw for every model
    data = torch.Generator().manual_seed(cfg.seed + 1)  # same data stream for every model
    model = AddingModel(spec, cfg.hidden)
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr)
    result = Result(spec, describe_executor(model.rnn))
    log(f"\n== {spec.label}: Recurrent({spec.cell!r}, 2, {cfg.hidden}"
        + "".join(f", {k}={v!r}" for k, v in spec.options.items())
        + f") + Linear({cfg.hidden}, 1), {sum(p.numel() for p in params):,} parameters")
    log(f"   {spec.blurb}")
    log(f"   executor: {result.executor}")

    result.curve.append((0, evaluate(model, *held_out)))
    start = time.perf_counter()
    next_report = cfg.report_every_s
    window: list[float] = []
    while True:
        elapsed = time.perf_counter() - start
        if cfg.steps is not None and result.steps >= cfg.steps:
            break
        if cfg.steps is None and elapsed >= cfg.seconds_per_model:
            break
        x, y = adding_batch(cfg.seq_len, cfg.batch, generator=data)
        loss = torch.mean((model(x) - y) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, cfg.clip)
        opt.step()
        result.steps += 1
        window.append(loss.item())
        if result.steps % cfg.eval_every == 0:
            result.curve.append((result.steps, evaluate(model, *held_out)))
        elapsed = time.perf_counter() - start
        if elapsed >= next_report:
            next_report += cfg.report_every_s
            log(f"   {elapsed:5.1f}s  step {result.steps:5d}  train MSE {sum(window) / len(window):.4f}"
                f"  held-out MSE {result.curve[-1][1]:.4f}")
            window.clear()
    result.seconds = time.perf_counter() - start
    if result.curve[-1][0] != result.steps:
        result.curve.append((result.steps, evaluate(model, *held_out)))
    log(f"   done: {result.steps} steps in {result.seconds:.1f}s, held-out MSE {result.final_mse:.4f}")
    return result


# ---- text chart ----------------------------------------------------------------------------------
def loss_chart(results: Sequence[Result], width: int = 60, levels: Sequence[float] | None = None
               ) -> list[str]:
    """Held-out MSE against training step, log scale, one marker letter per model.

    Each row is a band of MSE values around its label; the dashed row is the 1/6 baseline. A ``*``
    marks a cell where several models fall together.
    """
    if levels is None:
        levels = [0.3, ADDING_BASELINE_MSE, 0.1, 0.03, 0.01, 0.003, 0.001, 0.0003]
    max_step = max(max(r.steps for r in results), 1)
    logs = [math.log10(v) for v in levels]

    def row_of(mse: float) -> int:
        v = math.log10(max(mse, 1e-12))
        return min(range(len(logs)), key=lambda i: abs(logs[i] - v))

    grid = [[" "] * width for _ in levels]
    base_row = row_of(ADDING_BASELINE_MSE)
    for c in range(width):
        grid[base_row][c] = "-" if c % 2 == 0 else " "
    for r in results:
        for step, mse in r.curve:
            col = min(width - 1, round(step / max_step * (width - 1)))
            row = row_of(mse)
            cell = grid[row][col]
            grid[row][col] = r.spec.marker if cell in " -" or cell == r.spec.marker else "*"
    lines = []
    for i, level in enumerate(levels):
        label = "1/6 " if i == base_row else f"{level:<4g}"
        lines.append(f"  {label:>6} |" + "".join(grid[i]).rstrip())
    lines.append("         +" + "-" * width)
    end = f"step {max_step}"
    lines.append("          0" + end.rjust(width - 1))
    lines.append("          " + "   ".join(f"{r.spec.marker} = {r.spec.label}" for r in results)
                 + "   * = several")
    return lines


def summary_table(results: Sequence[Result]) -> list[str]:
    head = (f"  {'cell':<18} {'executor':<33} {'steps':>6} {'final MSE':>10}  {'beats 1/6?':<10} "
            f"{'first below':>11} {'time':>7}")
    lines = [head, "  " + "-" * (len(head) - 2)]
    for r in results:
        verdict = "yes" if r.beats_baseline else "no"
        first = "-" if r.first_beat is None else f"step {r.first_beat}"
        lines.append(
            f"  {r.spec.label:<18} {r.executor:<33} {r.steps:>6} {r.final_mse:>10.4f}  "
            f"{verdict:<10} {first:>11} {r.seconds:>6.1f}s"
        )
    return lines


EXPLANATION = """\
What you are seeing: Elman squeezes its memory through tanh(W_hh h) at every step, so the gradient
that should teach it to keep the first marked number shrinks geometrically over the {T2}-{T} steps to
the end (vanishing gradients): it only learns to answer the mean, 1.0, and stays at the 1/6 baseline.
LSTM and GRU keep memory in gated, additive state that passes values and gradients on unchanged while
a gate is open; once the gates learn to latch the marked numbers, the error collapses towards 0."""


# ---- entry point ---------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> Config:
    p = argparse.ArgumentParser(
        prog="python -m rnnkit.demo",
        description="Elman vs LSTM vs GRU on the adding problem: gated cells learn long-range memory.",
    )
    p.add_argument("--quick", action="store_true", help="a few seconds in all (short sequences), for tests")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, default=None, metavar="N",
                        help=f"train each model for exactly N steps (default {DEFAULT_STEPS}; quick: 1 s each)")
    budget.add_argument("--seconds-per-model", type=float, default=None, metavar="N",
                        help="train each model for N seconds of wall-clock time instead of a step count")
    p.add_argument("--seq-len", type=int, default=None, metavar="T", help="sequence length (default 100)")
    p.add_argument("--hidden", type=int, default=None, metavar="H", help="hidden size (default 64)")
    p.add_argument("--batch", type=int, default=None, metavar="B", help="batch size (default 64)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 0.01)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch CPU threads (default: 2, or 1 on a busy machine; quick: 1)")
    a = p.parse_args(argv)
    cfg = Config(seq_len=20, hidden=32, batch=32, seconds_per_model=1.0, steps=None, eval_every=10,
                 eval_size=256, report_every_s=0.5, threads=1) if a.quick else Config()
    if a.seconds_per_model is not None:
        cfg.steps = None
    for name, value in (("seconds_per_model", a.seconds_per_model), ("steps", a.steps),
                        ("seq_len", a.seq_len), ("hidden", a.hidden), ("batch", a.batch),
                        ("lr", a.lr), ("threads", a.threads)):
        if value is not None:
            setattr(cfg, name, value)
    cfg.seed = a.seed
    if cfg.seq_len < 2:
        p.error("--seq-len must be at least 2")
    if cfg.steps is not None and cfg.steps < 1:
        p.error("--steps must be at least 1")
    if cfg.seconds_per_model <= 0:
        p.error("--seconds-per-model must be positive")
    if cfg.threads is not None and cfg.threads < 1:
        p.error("--threads must be at least 1")
    return cfg


def auto_threads() -> tuple[int, str]:
    """2 CPU threads (the demo is sized for 2 cores), or 1 when other work keeps the cores busy.

    At the demo's sizes each step is many small kernels, and torch's two threads meet at a barrier
    after each: when another process holds one core, every barrier waits for the scheduler and a
    training step can take 10-100 times longer, while one thread runs about as fast as two would
    on an idle machine.
    """
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not available on Windows
        load = 0.0
    if cores < 2:
        return 1, _threads_text(1)
    if load > cores - 1:
        return 1, f"{_threads_text(1)} (the machine is busy: load {load:.1f} on {cores} cores)"
    return 2, _threads_text(2)


def _threads_text(n: int) -> str:
    return f"{n} CPU thread" + ("s" if n > 1 else "")


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    if cfg.threads is None:
        cfg.threads, cfg.threads_note = auto_threads()
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        run(cfg)
    finally:
        torch.set_num_threads(threads)  # main() may run inside a test process
    return 0


def run(cfg: Config) -> list[Result]:
    budget = f"{cfg.steps} steps" if cfg.steps is not None else f"{cfg.seconds_per_model:g} s"
    print(f"rnnkit demo: the adding problem, T={cfg.seq_len} steps, hidden size {cfg.hidden}, "
          f"batch {cfg.batch}, Adam lr {cfg.lr:g}, clip {cfg.clip:g}, {budget} per model, seed {cfg.seed}, "
          f"{cfg.threads_note or _threads_text(cfg.threads)}")
    print("Input: (T, batch, 2) = random values in [0,1] and a marker channel with two 1s, one in "
          "each half.")
    print("Target: the sum of the two marked values. Baseline (always answer 1.0): MSE 1/6 ≈ 0.167.")

    held_out = adding_batch(cfg.seq_len, cfg.eval_size,
                            generator=torch.Generator().manual_seed(cfg.seed + 12345))
    results = [train_one(spec, cfg, held_out) for spec in contestants(cfg)]

    print(f"\nHeld-out MSE vs training step (log scale, evaluated every {cfg.eval_every} steps):")
    print("\n".join(loss_chart(results)))
    print("\nSummary (MSE on the held-out set. 'beats 1/6?': the final MSE is below half the "
          "baseline;\n'first below': the first evaluation where it was):")
    print("\n".join(summary_table(results)))
    print()
    print(EXPLANATION.format(T=cfg.seq_len, T2=cfg.seq_len - cfg.seq_len // 2))
    note = plateau_note(results)
    if note:
        print(note)
    return results


def plateau_note(results: Sequence[Result]) -> str:
    """A line for the gated models that were still on the 1/6 plateau when their budget ran out."""
    stuck = [r.spec.label for r in results if r.spec.cell != "rnn_tanh" and not r.beats_baseline]
    if not stuck:
        return ""
    return (f"Still on the plateau: {', '.join(stuck)}. Gated cells sit at 1/6 for a few hundred "
            "steps before the gates find the marks\n(chrono init shortens that); give them more "
            "steps with --seconds-per-model or --steps.")


if __name__ == "__main__":
    raise SystemExit(main())
