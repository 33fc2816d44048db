"""Shared pieces of the translate tests: a padded source batch and a reversal run."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from rnnkit.cli import main

PAD = 0


def padded_source(B: int = 4, S: int = 6, V: int = 20, lengths=(6, 3, 1, 4), seed: int = 0):
    """(src (S, B) of random tokens >= 4, padded with PAD past each length; lengths)."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, V, (S, B), generator=g)
    lengths = torch.tensor(lengths)
    for b in range(B):
        src[lengths[b]:, b] = PAD
    return src, lengths


def reversal_tsv(n: int, rng: random.Random) -> str:
    """``n`` string-reversal pairs (3-7 letters of a-h) as a TSV with a header."""
    rows = ["src\ttgt"]
    for _ in range(n):
        s = "".join(rng.choice("abcdefgh") for _ in range(rng.randint(3, 7)))
        rows.append(f"{s}\t{s[::-1]}")
    return "\n".join(rows) + "\n"


def reversal_files(root: Path, n_train: int, n_valid: int, seed: int) -> Path:
    """``root/train.tsv`` and ``root/valid.tsv``: reversal pairs (with a header); returns ``root``."""
    rng = random.Random(seed)
    (root / "train.tsv").write_text(reversal_tsv(n_train, rng))
    (root / "valid.tsv").write_text(reversal_tsv(n_valid, rng))
    return root


def train_reversal_run(root: Path, flags: list[str]) -> tuple[Path, Path]:
    """A translate run trained on 400 reversal pairs (50 for validation) in ``root/run``."""
    reversal_files(root, 400, 50, seed=0)
    run = root / "run"
    assert main(["translate", "train", str(root / "train.tsv"), "--valid", str(root / "valid.tsv"),
                 "--out", str(run), *flags]) == 0
    return run, root
