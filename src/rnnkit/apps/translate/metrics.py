"""Scores of translations against references: sacrebleu's BLEU and chrF (with their signatures), exact match."""

from __future__ import annotations

from typing import Any

from rnnkit.errors import UserError


def scores(hypotheses: list[str], references: list[str]) -> dict[str, Any]:
    """``{"bleu", "chrf", "exact_match", "bleu_signature", "chrf_signature", "sentences"}``."""
    try:
        import sacrebleu
    except ImportError:
        raise UserError("scoring translations needs sacrebleu: pip install sacrebleu") from None
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    bleu = sacrebleu.metrics.BLEU()
    chrf = sacrebleu.metrics.CHRF()
    b = bleu.corpus_score(hypotheses, [references])
    c = chrf.corpus_score(hypotheses, [references])
    exact = sum(h == r for h, r in zip(hypotheses, references, strict=True)) / max(1, len(references))
    return {"bleu": round(b.score, 2), "chrf": round(c.score, 2), "exact_match": round(exact, 4),
            "sentences": len(references), "bleu_signature": str(bleu.get_signature()),
            "chrf_signature": str(chrf.get_signature())}
