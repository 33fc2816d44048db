"""Where a G2P training step's time goes (issue #15): the attention encoder-decoder of docs/translate.md's
run B (bi-LSTM encoder of 2 layers, hidden 256, embedding 128, no input feeding, dropout 0.2), one
teacher-forced step (forward, label-smoothed cross-entropy, backward, gradient clipping, Adam) on a
batch of synthetic words of G2P's sizes. Prints the median step time of 5 rounds of 50 steps and, with
``--profile``, torch.profiler's operators by self CPU time over 30 steps. Not a ratio against an anchor:
it says which part of the model a faster step would have to come from.

Run (from the repository root)::

    .venv/bin/python benchmarks/translate_step_profile.py --threads 2 --profile
    .venv/bin/python benchmarks/translate_step_profile.py --threads 1
"""

from __future__ import annotations

import argparse
import time

import torch

from rnnkit._plan import announce
from rnnkit.layers.seq2seq import Seq2Seq
from rnnkit.training.config import TrainConfig
from rnnkit.training.optim import build_optimizer


def main(argv: list[str] | None = None) -> float:
    """Returns the median seconds per step."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--source-length", type=int, default=10, help="letters per word, EOS included")
    ap.add_argument("--target-length", type=int, default=9, help="phonemes per word, BOS/EOS included")
    ap.add_argument("--vocab", type=int, default=72, help="G2P's joint vocabulary: letters, phonemes, 4 specials")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds (the median is printed)")
    ap.add_argument("--steps", type=int, default=50, help="steps per round")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args(argv)
    for name in ("threads", "batch", "source_length", "target_length", "rounds", "steps"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.vocab < 5:
        ap.error("--vocab must be at least 5 (4 special tokens and a symbol)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    V, B, S, T = args.vocab, args.batch, args.source_length, args.target_length
    model = Seq2Seq(V, 128, 256, "lstm", encoder_layers=2, attention="general", dropout=0.2, input_feeding=False)
    optimizer = build_optimizer(model.parameters(), TrainConfig(optimizer="adam", lr=1e-3))  # the trainer's
    src = torch.randint(4, V, (S, B))
    lengths = torch.full((B,), S)
    lengths[B // 2:] = S - 2  # half the words two letters shorter: padding, as in a real batch
    src[S - 2:, B // 2:] = 0
    targets_in, targets_out = torch.randint(4, V, (T, B)), torch.randint(4, V, (T, B))

    def step() -> None:
        logits = model(src, lengths, targets_in)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), targets_out.reshape(-1), ignore_index=0,
                                                 label_smoothing=0.1)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    steps = 20 + args.rounds * args.steps + 30 * args.profile
    per_step = 0.065 * max(B, 16) / 64  # about a one-thread step at G2P's sizes on a 2-core VM
    announce(f"{steps} steps (20 warm-up, {args.rounds} timed rounds of {args.steps}"
             + (", 30 profiled)" if args.profile else ")"), steps * per_step)
    for _ in range(20):  # warm-up
        step()
    rounds = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        rounds.append((time.perf_counter() - t0) / args.steps)
    median = sorted(rounds)[len(rounds) // 2]
    print(f"{args.threads} thread(s), batch {B}: {median * 1e3:.1f} ms per step ({1 / median:.1f} steps/s)")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(30):
                step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))
    return median


if __name__ == "__main__":
    main()
