"""Language-model metrics from a mean cross-entropy in nats per token.

- perplexity: ``exp(ce)`` (per token of the model's tokenizer),
- bits per character: ``ce * tokens / characters / ln 2``; for characters ``tokens == characters``;
  for BPE the split's own token/character ratio converts the per-token loss to per-character, so
  char and BPE runs compare on the same scale.
"""

from __future__ import annotations

import math


def perplexity(ce: float) -> float:
    return math.exp(ce) if ce < 700 else math.inf


def bits_per_char(ce: float, tokens_per_char: float = 1.0) -> float:
    return ce * tokens_per_char / math.log(2)


def summary(ce: float, tokens_per_char: float = 1.0) -> dict[str, float]:
    return {"cross_entropy": ce, "perplexity": perplexity(ce), "bits_per_char": bits_per_char(ce, tokens_per_char)}
