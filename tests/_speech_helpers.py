"""Speech data for tests without espeak-ng: short noisy tone sequences, one tone per letter."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def tone_set(root: Path, n: int = 16, seed: int = 0, n_train: int | None = None) -> Path:
    """``n`` utterances of 1-3 letters of "abc" (300/500/700 Hz, 0.15 s each, noise 0.01) as WAV files in
    ``root`` and their transcripts CSV (returned); the first ``n_train`` (default 3/4) are the training
    split, the rest validation; voices v0-v2 in turn. Enough to train on deterministically, not to learn."""
    import soundfile as sf

    root.mkdir(parents=True, exist_ok=True)
    n_train = 3 * n // 4 if n_train is None else n_train
    rng = np.random.default_rng(seed)
    rows = ["path,text,voice,split"]
    for i in range(n):
        text = "".join(rng.choice(list("abc"), size=int(rng.integers(1, 4))))
        t = np.arange(2400) / 16000
        wave = np.concatenate([0.3 * np.sin(2 * np.pi * (300 + 200 * "abc".index(c)) * t) for c in text])
        wave = wave + 0.01 * rng.standard_normal(wave.size)
        sf.write(root / f"u{i}.wav", wave.astype(np.float32), 16000, subtype="PCM_16")
        rows.append(f"u{i}.wav,{text},v{i % 3},{'train' if i < n_train else 'valid'}")
    (root / "transcripts.csv").write_text("\n".join(rows) + "\n")
    return root / "transcripts.csv"
