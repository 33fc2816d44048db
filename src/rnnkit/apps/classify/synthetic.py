"""A small synthetic classification set shipped as code: the example for the docs, the demo and tests.

Three classes of two-dimensional series of varying length (30 to 60 steps): a sine whose second
dimension is its cosine, a square wave, and a noisy ramp; each case has its own phase, frequency and
amplitude and Gaussian noise. Written as a long CSV with the archive's train/test split columns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSES = ("sine", "square", "ramp")


def make_cases(n_per_class: int, seed: int, min_len: int = 30, max_len: int = 60) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(n_per_class):
        for label in CLASSES:
            T = int(rng.integers(min_len, max_len + 1))
            t = np.arange(T)
            phase, freq, amp = rng.uniform(0, 2 * np.pi), rng.uniform(0.15, 0.35), rng.uniform(0.5, 2.0)
            if label == "sine":
                a, b = np.sin(freq * t + phase), np.cos(freq * t + phase)
            elif label == "square":
                a = np.sign(np.sin(freq * t + phase))
                b = np.roll(a, 3)
            else:
                a = np.linspace(-1, 1, T) * rng.choice([-1, 1])
                b = rng.normal(0, 0.5, T).cumsum() / np.sqrt(T)
            x = amp * np.stack([a, b], 1) + rng.normal(0, 0.15, (T, 2))
            cases.append((label, x.astype(np.float32)))
    return cases


def write_example(path: Path, n_train: int = 20, n_test: int = 20, seed: int = 0) -> Path:
    """Write ``n_train`` + ``n_test`` cases per class as a long CSV at ``path``."""
    from rnnkit.io.atomic import write_text_atomic

    lines = ["case_id,split,label,t,dim_0,dim_1"]
    case = 0
    for split, n, s in (("train", n_train, seed), ("test", n_test, seed + 1)):
        for label, x in make_cases(n, s):
            lines.extend(f"{case},{split},{label},{t},{x[t, 0]:.5f},{x[t, 1]:.5f}" for t in range(len(x)))
            case += 1
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(path, "\n".join(lines) + "\n")
