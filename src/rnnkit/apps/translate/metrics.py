"""Scores of translations against references: sacrebleu's BLEU and chrF (with their signatures) and exact
match for text; word and phoneme error rates for grapheme-to-phoneme runs (:mod:`.error_rates`)."""

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


def scores_for(tokenizer: str, hypotheses: list[str], references: list[str]) -> dict[str, Any]:
    """The scores a run of ``tokenizer`` reports: error rates for ``g2p``, :func:`scores` otherwise."""
    if tokenizer == "g2p":
        from rnnkit.apps.translate.error_rates import error_rates

        return error_rates(hypotheses, references)
    return scores(hypotheses, references)


def summary(s: dict[str, Any]) -> str:
    """One line of the headline scores."""
    if "wer" in s:
        return f"WER {100 * s['wer']:.2f}%, PER {100 * s['per']:.2f}% over {s['sentences']} words"
    return (f"BLEU {s['bleu']:.2f}, chrF {s['chrf']:.2f}, exact match {s['exact_match']:.3f} "
            f"over {s['sentences']} sentences")
