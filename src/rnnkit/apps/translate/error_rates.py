"""Word and phoneme error rates of grapheme-to-phoneme output (the scores of ``--tokenizer g2p`` runs).

A hypothesis and its reference are strings of whitespace-separated phonemes (``HH AH0 L OW1``).

- phoneme error rate (PER): the Levenshtein distance between the phoneme sequences (substitutions,
  deletions and insertions, each 1), summed over the words and divided by the total number of
  reference phonemes; the corpus-level figure ``jiwer.wer`` gives for the same strings (tested).
- word error rate (WER): the share of words whose hypothesis is not exactly the reference sequence
  (a word is wrong unless every phoneme matches).
"""

from __future__ import annotations

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


def error_rates(hypotheses: list[str], references: list[str]) -> dict[str, Any]:
    """``{"wer", "per", "exact_match", "phoneme_errors", "phonemes", "sentences"}`` (rates as fractions)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    errors = phonemes = wrong = 0
    for h, r in zip(hypotheses, references, strict=True):
        hs, rs = h.split(), r.split()
        errors += edit_distance(hs, rs)
        phonemes += len(rs)
        wrong += hs != rs
    n = len(references)
    return {"wer": round(wrong / max(1, n), 5), "per": round(errors / max(1, phonemes), 5),
            "exact_match": round(1 - wrong / max(1, n), 5), "phoneme_errors": errors, "phonemes": phonemes,
            "sentences": n}
