"""Word and phoneme error rates of grapheme-to-phoneme output (the scores of ``--tokenizer g2p`` runs).

A hypothesis and its reference are strings of whitespace-separated phonemes (``HH AH0 L OW1``). A word
may have several accepted pronunciations (``either``: ``IY DH ER`` and ``AY DH ER``); each is a reference,
and a hypothesis is scored against the closest one, the multi-reference protocol of the G2P literature
(Bisani & Ney 2008; Yao & Zweig 2015):

- phoneme error rate (PER): the Levenshtein distance between the hypothesis and its closest reference
  (substitutions, deletions and insertions, each 1), summed over the words and divided by the summed
  lengths of those references; with one reference per word it is the corpus-level figure ``jiwer.wer``
  gives for the same strings (tested).
- word error rate (WER): the share of words whose hypothesis equals none of their references.

With several references per word the scores against the first reference alone (the dictionary's
primary pronunciation) are reported beside them as ``wer_first`` and ``per_first``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def edit_distance(hyp: list[str], ref: list[str]) -> int:
    """Levenshtein distance between two token sequences (unit costs)."""
    prev = list(range(len(ref) + 1))
    for i, h in enumerate(hyp, 1):
        cur = [i] + [0] * len(ref)
        for j, r in enumerate(ref, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (h != r))
        prev = cur
    return prev[-1]


def _rates(hypotheses: list[str], references: list[list[str]]) -> tuple[float, float, int, int]:
    """``(wer, per, phoneme errors, reference phonemes)``, each hypothesis against its closest
    reference (fewest edits; the first listed on a tie)."""
    errors = phonemes = wrong = 0
    for h, refs in zip(hypotheses, references, strict=True):
        hs = h.split()
        dist, ref = min(((edit_distance(hs, r), r) for r in (x.split() for x in refs)), key=lambda d: d[0])
        errors += dist
        phonemes += len(ref)
        wrong += dist > 0
    n = max(1, len(references))
    return wrong / n, errors / max(1, phonemes), errors, phonemes


def error_rates(hypotheses: list[str], references: Sequence[str | Sequence[str]]) -> dict[str, Any]:
    """``{"wer", "per", "exact_match", "phoneme_errors", "phonemes", "sentences", "references"}`` (rates as
    fractions). ``references[i]``: the reference of word i, or its list of accepted references (first:
    the primary); with more than one for some word, ``wer_first``/``per_first`` score the first alone."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    if any(not r for r in refs):
        raise ValueError("every word needs at least one reference")
    wer, per, errors, phonemes = _rates(hypotheses, refs)
    out: dict[str, Any] = {"wer": round(wer, 5), "per": round(per, 5), "exact_match": round(1 - wer, 5),
                           "phoneme_errors": errors, "phonemes": phonemes, "sentences": len(refs),
                           "references": sum(map(len, refs))}
    if out["references"] > len(refs):
        wer1, per1, *_ = _rates(hypotheses, [r[:1] for r in refs])
        out.update(wer_first=round(wer1, 5), per_first=round(per1, 5))
    return out
