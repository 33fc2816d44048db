"""``rnnkit speech synth``: a speech data set synthesised with espeak-ng, no download.

Voices: every English espeak-ng voice that needs nothing else installed (``espeak-ng --voices=en``,
the ``gmw/`` ones: en-gb, en-us, en-029, Scottish, Lancaster, West Midlands, RP, New York) with each
of the variants ``+m1..+m7`` and ``+f1..+f4``; a *voice* is one such pair (``en-us+f3``). Every
utterance also draws a speaking rate, a pitch, a word gap and, with some probability, additive noise
and a reverberation-like filter (:mod:`.augment`). Whole voices are held out for validation and
test: no voice of those splits speaks any training utterance.

Tasks: ``digits`` (connected digit strings of 1 to 7 digits, "oh" and "zero" both used, as in
TIDIGITS) and ``commands`` (a small vocabulary of command sentences). Output: ``DIR/wavs/SPLIT/*.wav``
(16-bit PCM, mono, 16 kHz), ``DIR/transcripts.csv`` (path relative to DIR, text, voice, split, and the
synthesis parameters) and ``DIR/words.txt`` (the task's words, for ``--lexicon``). Everything is drawn
from a NumPy generator seeded by ``(seed, utterance)``, so a seed gives the same files byte for byte
(with the same espeak-ng).
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnkit.errors import UserError

DIGITS = ("oh", "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_VERBS = ("turn on", "turn off", "open", "close", "stop", "start")
_OBJECTS = ("the light", "the radio", "the door", "the window", "the music", "the fan")
COMMANDS = (*(f"{v} {o}" for v in _VERBS for o in _OBJECTS), "volume up", "volume down", "next song",
            "previous song", "what time is it", "yes", "no", "go", "cancel", "help me")
VARIANTS = (*(f"m{i}" for i in range(1, 8)), *(f"f{i}" for i in range(1, 5)))
TASKS = ("digits", "commands")
SPLITS = ("train", "valid", "test")
RATE = 16000
INSTALL_HINT = ("install it with `apt-get install espeak-ng` (Debian/Ubuntu), `brew install espeak-ng` (macOS) "
                "or `make setup` in the rnnkit repository")


class EspeakMissing(UserError):
    """espeak-ng is not installed."""


def espeak_binary() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise EspeakMissing(f"espeak-ng is not installed: {INSTALL_HINT}")
    return path


def english_voices(binary: str) -> list[str]:
    """The English espeak-ng voices that need no MBROLA data (``gmw/`` files), sorted."""
    out = subprocess.run([binary, "--voices=en"], capture_output=True, text=True, check=False).stdout
    langs = set()
    for line in out.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 5 and parts[4].startswith("gmw/"):
            langs.add(parts[1])
    if not langs:
        raise UserError("espeak-ng lists no English voice (espeak-ng --voices=en): reinstall espeak-ng")
    return sorted(langs)


def split_voices(voices: list[str], seed: int, valid: int, test: int) -> dict[str, list[str]]:
    """Voices by split: ``valid`` and ``test`` whole voices drawn with ``seed``, the rest for training."""
    if len(voices) < valid + test + 1:
        raise UserError(f"{len(voices)} voices cannot hold out {valid} + {test} and still train")
    order = list(voices)
    np.random.default_rng([seed, 0x5EECC]).shuffle(order)
    return {"valid": sorted(order[:valid]), "test": sorted(order[valid:valid + test]),
            "train": sorted(order[valid + test:])}


def utterance_text(task: str, rng: np.random.Generator) -> str:
    if task == "digits":
        return " ".join(DIGITS[int(rng.integers(len(DIGITS)))] for _ in range(int(rng.integers(1, 8))))
    return COMMANDS[int(rng.integers(len(COMMANDS)))]


def speak(binary: str, text: str, voice: str, wpm: int, pitch: int, gap: int, workdir: Path) -> np.ndarray:
    """espeak-ng's audio of ``text`` at :data:`RATE` Hz."""
    import soundfile as sf

    from rnnkit.apps.speech.audio import resample

    out = workdir / "u.wav"
    proc = subprocess.run([binary, "-v", voice, "-s", str(wpm), "-p", str(pitch), "-g", str(gap), "-w", str(out),
                           "--", text], capture_output=True, check=False)
    if proc.returncode != 0 or not out.exists():
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise UserError(f"espeak-ng failed on voice {voice}: {err[-1] if err else 'no output'}")
    x, rate = sf.read(io.BytesIO(out.read_bytes()), dtype="float32")
    return resample(x, rate, RATE)


@dataclass
class Utterance:
    path: str
    text: str
    voice: str
    split: str
    wpm: int
    pitch: int
    gap: int
    snr_db: float | None
    rt60: float | None


def plan(task: str, n: int, seed: int, voices: dict[str, list[str]], valid_fraction: float,
         test_fraction: float, noise: float, reverb: float) -> list[Utterance]:
    """What each utterance will be (text, voice, parameters): all drawn from ``(seed, index)``."""
    n_valid = round(n * valid_fraction)
    n_test = round(n * test_fraction)
    out = []
    for i in range(n):
        split = "valid" if i < n_valid else "test" if i < n_valid + n_test else "train"
        rng = np.random.default_rng([seed, i])
        text = utterance_text(task, rng)
        pool = voices[split]
        voice = pool[int(rng.integers(len(pool)))]
        wpm, pitch, gap = int(rng.integers(120, 221)), int(rng.integers(20, 81)), int(rng.integers(0, 4))
        snr = round(float(rng.uniform(5, 30)), 1) if rng.random() < noise else None
        rt60 = round(float(rng.uniform(0.15, 0.6)), 2) if rng.random() < reverb else None
        out.append(Utterance(f"wavs/{split}/{i:06d}.wav", text, voice, split, wpm, pitch, gap, snr, rt60))
    return out


def render(binary: str, u: Utterance, seed: int, index: int, workdir: Path) -> np.ndarray:
    from rnnkit.apps.speech.augment import add_noise, reverb

    x = speak(binary, u.text, u.voice, u.wpm, u.pitch, u.gap, workdir)
    rng = np.random.default_rng([seed, index, 1])
    if u.rt60 is not None:
        x = reverb(x, RATE, u.rt60, float(rng.uniform(0.3, 1.0)), rng)
    if u.snr_db is not None:
        x = add_noise(x, u.snr_db, rng, "pink" if rng.random() < 0.5 else "white")
    peak = float(np.max(np.abs(x))) + 1e-9
    return (x * min(1.0, 0.9 / peak)).astype(np.float32)


CSV_COLUMNS = ("path", "text", "voice", "split", "wpm", "pitch", "gap", "snr_db", "rt60")


def synth_dataset(out: str | Path, task: str = "digits", n: int = 1000, seed: int = 0, *,
                  valid_voices: int = 8, test_voices: int = 8, valid_fraction: float = 0.1,
                  test_fraction: float = 0.1, noise: float = 0.3, reverb: float = 0.3,
                  progress=None) -> dict:
    """Write ``n`` utterances into ``out`` (see the module docstring); returns a summary."""
    from rnnkit.apps.speech.audio import wav_bytes
    from rnnkit.io.atomic import write_bytes_atomic, write_text_atomic

    if task not in TASKS:
        raise UserError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    if n < 3:
        raise UserError(f"--n must be at least 3 (one utterance per split), got {n}")
    for name, v in (("noise", noise), ("reverb", reverb)):
        if not 0 <= v <= 1:
            raise UserError(f"--{name} is a probability in [0, 1], got {v}")
    if not (0 < valid_fraction < 1 and 0 < test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise UserError("the valid and test fractions must be in (0, 1) and sum to less than 1")
    out = Path(out)
    if (out / "transcripts.csv").exists():
        raise UserError(f"{out} already holds a data set (transcripts.csv): choose another --out")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file: give a directory for --out")
    binary = espeak_binary()
    voices = [f"{lang}+{v}" for lang in english_voices(binary) for v in VARIANTS]
    by_split = split_voices(voices, seed, valid_voices, test_voices)
    utts = plan(task, n, seed, by_split, valid_fraction, test_fraction, noise, reverb)
    if any(round(n * f) < 1 for f in (valid_fraction, test_fraction)):
        raise UserError(f"--n {n} leaves the validation or test split empty: give more utterances")
    seconds = 0.0
    with tempfile.TemporaryDirectory(prefix="rnnkit-synth-") as tmp:
        for i, u in enumerate(utts):
            x = render(binary, u, seed, i, Path(tmp))
            seconds += x.size / RATE
            (out / u.path).parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(out / u.path, wav_bytes(x, RATE))
            if progress is not None:
                progress(i + 1, n)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for u in utts:
        w.writerow([u.path, u.text, u.voice, u.split, u.wpm, u.pitch, u.gap,
                    "" if u.snr_db is None else u.snr_db, "" if u.rt60 is None else u.rt60])
    vocabulary = DIGITS if task == "digits" else sorted({w for c in COMMANDS for w in c.split()})
    write_text_atomic(out / "words.txt", "".join(w + "\n" for w in sorted(vocabulary)))
    write_text_atomic(out / "transcripts.csv", buf.getvalue())
    counts = {s: sum(u.split == s for u in utts) for s in SPLITS}
    return {"out": str(out), "task": task, "utterances": counts, "voices": {s: len(v) for s, v in by_split.items()},
            "held_out_voices": {"valid": by_split["valid"], "test": by_split["test"]},
            "hours": round(seconds / 3600, 3), "seed": seed}
