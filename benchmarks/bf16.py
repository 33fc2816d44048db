"""bfloat16 on CPU: the fused executor in bf16 against itself in float32, and a short training run.

Speed: one layer, ``rnnkit.Recurrent(cell, I, H, backend="fused_cpu")`` in float32 and the same
module cast to bfloat16 (``.bfloat16()``), timed in the same process, interleaved per repetition,
median; ``fwd`` is inference (eval, no grad), ``fwdbwd`` forward plus ``output.sum().backward()``
with the input requiring grad. The ratio printed is ``fp32 time / bf16 time`` (above 1: bf16 is
faster). ``torch.nn.LSTM`` in bf16 (oneDNN) is timed beside it as the anchor a bf16 user has
(``rnnkit bf16 / torch bf16``: below 1, rnnkit is faster).

In bf16 the fused executor runs the projections over all steps and the weight gradients through
torch's bf16 GEMM (oneDNN: AMX where the CPU has it) and keeps the loop's state, pointwise math
and per-step GEMMs in float32 (see docs/deploy.md).

Training (``--train``): next-value prediction on the yearly sunspot numbers that ship with
statsmodels (309 years, windows of 32 steps, standardised), a 1-layer LSTM (H=128) and a linear
head, Adam (lr 3e-3), ``--steps`` full-batch steps, for each seed: float32, and bf16 with float32
master weights (forward and backward in bf16, the optimizer on float32 copies). Prints the loss
every 50 steps and the final losses per seed: bf16 is "within noise" if its final loss differs from
fp32's by less than the spread of fp32's final losses over the seeds.

By default the speed comparison is quick: (100,64,256,256) only, 5 repetitions; ``--full`` adds
(200,64,512,512) and takes 7 repetitions (the table of docs/benchmarks.md). The expected duration
(speed: every configuration on a 16-step prefix; training: 3 steps of each run) is printed first.

    python benchmarks/bf16.py                       # quick: speed at (100,64,256,256)
    python benchmarks/bf16.py --full                # speed at (100,64,256,256) and (200,64,512,512)
    python benchmarks/bf16.py --train --seeds 0 1 2 --steps 300
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

import rnnkit
from rnnkit._plan import add_full_flag, announce, apply_preset

BF16 = torch.bfloat16
QUICK = {"shapes": ["100x64x256x256"], "reps": 5}
FULL = {"shapes": ["100x64x256x256", "200x64x512x512"], "reps": 7}
FULL_TEXT = f"shapes {' '.join(FULL['shapes'])}, {FULL['reps']} repetitions"
PROBE_T, PROBE_STEPS = 16, 3


def _fwd(module: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        with torch.no_grad():
            module(x)
    return run


def _fwdbwd(module: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        y, _ = module(x)
        y.float().sum().backward()
        module.zero_grad(set_to_none=True)
        x.grad = None
    return run


def speed(cell: str, shape: tuple[int, int, int, int], mode: str, reps: int) -> dict[str, float]:
    T, B, I, H = shape
    torch.manual_seed(0)
    fp32 = rnnkit.Recurrent(cell, I, H, backend="fused_cpu")
    bf16 = copy.deepcopy(fp32).bfloat16()
    runs: dict[str, Callable[[], None]] = {}
    make = _fwd if mode == "fwd" else _fwdbwd
    for name, module, dtype in [("rnnkit fp32", fp32, torch.float32), ("rnnkit bf16", bf16, BF16)]:
        module.train(mode == "fwdbwd")
        runs[name] = make(module, torch.randn(T, B, I, dtype=dtype, requires_grad=mode == "fwdbwd"))
    if cell == "lstm":
        anchor = nn.LSTM(I, H).to(BF16).train(mode == "fwdbwd")
        runs["torch bf16"] = make(anchor, torch.randn(T, B, I, dtype=BF16, requires_grad=mode == "fwdbwd"))
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():  # warm-up (the extension's packing, oneDNN's primitives)
        run()
    for _ in range(reps):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _sunspot_windows(window: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    import statsmodels.api as sm

    values = torch.tensor(sm.datasets.sunspots.load_pandas().data["SUNACTIVITY"].to_numpy(),
                          dtype=torch.float32)
    values = (values - values.mean()) / values.std()
    windows = values.unfold(0, window + 1, 1)  # (N, window + 1)
    return windows[:, :-1].T.unsqueeze(-1).contiguous(), windows[:, 1:].T.unsqueeze(-1).contiguous()


class _Forecaster(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.rnn = rnnkit.Recurrent("lstm", 1, hidden, backend="fused_cpu")
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0])


def train(seed: int, steps: int, bf16: bool, hidden: int = 128) -> list[float]:
    x, y = _sunspot_windows()
    torch.manual_seed(seed)
    master = _Forecaster(hidden)
    work = copy.deepcopy(master).to(BF16) if bf16 else master
    opt = torch.optim.Adam(master.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        if bf16:
            with torch.no_grad():
                for w, m in zip(work.parameters(), master.parameters(), strict=True):
                    w.copy_(m)
        pred = work(x.to(BF16) if bf16 else x).float()
        loss = nn.functional.mse_loss(pred, y)
        loss.backward()
        if bf16:
            for w, m in zip(work.parameters(), master.parameters(), strict=True):
                m.grad, w.grad = w.grad.float(), None
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_full_flag(p, FULL_TEXT)
    p.add_argument("--shapes", nargs="*", default=None,
                   help=f"TxBxIxH (default {' '.join(QUICK['shapes'])}; --full: {' '.join(FULL['shapes'])})")
    p.add_argument("--cells", nargs="*", default=["lstm", "gru"])
    p.add_argument("--modes", nargs="*", default=["fwdbwd", "fwd"], choices=["fwd", "fwdbwd"])
    p.add_argument("--reps", type=int, default=None,
                   help=f"repetitions (median; default {QUICK['reps']}; --full: {FULL['reps']})")
    p.add_argument("--train", action="store_true", help="the training comparison instead of speed")
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=300)
    args = p.parse_args(argv)
    quick = apply_preset(args, QUICK, FULL) and not args.train
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load {os.getloadavg()[0]:.2f}, CPU bf16: {torch.backends.mkldnn.is_available()}")
    if args.train:
        _sunspot_windows()  # imports statsmodels: not a cost of the runs
        expected = 0.0
        for bf16 in (False, True):  # 1 step, then 1 + PROBE_STEPS: the set-up and the cost of a step
            t1, t2 = (_seconds(partial(train, 0, n, bf16)) for n in (1, 1 + PROBE_STEPS))
            per_step = max(0.0, t2 - t1) / PROBE_STEPS
            expected += len(args.seeds) * (max(0.0, t1 - per_step) + args.steps * per_step)
        announce(f"{2 * len(args.seeds)} training runs of {args.steps} steps", expected)
        finals = {False: [], True: []}
        for seed in args.seeds:
            for bf16 in (False, True):
                losses = train(seed, args.steps, bf16)
                finals[bf16].append(losses[-1])
                curve = " ".join(f"{losses[i]:.4f}" for i in range(0, args.steps, 50))
                print(f"seed {seed} {'bf16' if bf16 else 'fp32'}: loss every 50 steps {curve}; "
                      f"final {losses[-1]:.4f}")
        spread = max(finals[False]) - min(finals[False])
        gaps = [abs(a - b) for a, b in zip(finals[False], finals[True], strict=True)]
        print(f"final loss fp32 {statistics.mean(finals[False]):.4f} (spread over seeds {spread:.4f}), "
              f"bf16 {statistics.mean(finals[True]):.4f}; |bf16 - fp32| per seed max {max(gaps):.4f}: "
              f"{'within' if max(gaps) <= spread else 'outside'} the fp32 seed spread")
        return
    configs = [(cell, tuple(int(v) for v in text.split("x")), mode)
               for cell in args.cells for text in args.shapes for mode in args.modes]
    expected = 0.0
    for cell, shape, mode in configs:  # every run of the configuration on a short prefix, scaled to T
        probe = speed(cell, (min(shape[0], PROBE_T), *shape[1:]), mode, 1)  # type: ignore[arg-type]
        expected += sum(probe.values()) * (args.reps + 1) * shape[0] / min(shape[0], PROBE_T)
    announce(f"{len(configs)} rows x {args.reps} repetitions", expected, full=FULL_TEXT if quick else None)
    print(f"{'cell':5} {'shape':16} {'mode':7} {'fp32 ms':>9} {'bf16 ms':>9} {'fp32/bf16':>9} "
          f"{'torch bf16 ms':>13} {'rnnkit/torch bf16':>17}")
    for cell in args.cells:
        for text in args.shapes:
            shape = tuple(int(v) for v in text.split("x"))
            for mode in args.modes:
                t = speed(cell, shape, mode, args.reps)  # type: ignore[arg-type]
                anchor = t.get("torch bf16")
                tail = (f"{anchor * 1e3:13.1f} {t['rnnkit bf16'] / anchor:17.2f}" if anchor
                        else f"{'-':>13} {'-':>17}")
                print(f"{cell:5} {text:16} {mode:7} {t['rnnkit fp32'] * 1e3:9.1f} "
                      f"{t['rnnkit bf16'] * 1e3:9.1f} {t['rnnkit fp32'] / t['rnnkit bf16']:9.2f} {tail}")


if __name__ == "__main__":
    main()
