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


def scored_sources(tokenizer: str, pairs: list[tuple[str, str]]) -> tuple[list[str], list[Any]]:
    """``(sources to translate, their references)``. For ``g2p`` the lines of one word are its accepted
    pronunciations: each word once, with the list of its references in file order (duplicates dropped);
    other tokenizers score every line as a pair of its own."""
    if tokenizer != "g2p":
        return [s for s, _ in pairs], [t for _, t in pairs]
    grouped: dict[str, list[str]] = {}
    for s, t in pairs:
        refs = grouped.setdefault(s, [])
        if t not in refs:
            refs.append(t)
    return list(grouped), list(grouped.values())


def scores_for(tokenizer: str, hypotheses: list[str], references: list[Any]) -> dict[str, Any]:
    """The scores a run of ``tokenizer`` reports: error rates for ``g2p`` (``references[i]`` a string or the
    list of word i's accepted pronunciations), :func:`scores` otherwise."""
    if tokenizer == "g2p":
        from rnnkit.apps.translate.error_rates import error_rates

        return error_rates(hypotheses, references)
    return scores(hypotheses, references)


def summary(s: dict[str, Any]) -> str:
    """One line of the headline scores."""
    if "wer" in s:
        line = f"WER {100 * s['wer']:.2f}%, PER {100 * s['per']:.2f}% over {s['sentences']} words"
        if "wer_first" in s:
            line += (f" ({s['references']} accepted pronunciations; against the first alone: WER "
                     f"{100 * s['wer_first']:.2f}%, PER {100 * s['per_first']:.2f}%)")
        return line
    return (f"BLEU {s['bleu']:.2f}, chrF {s['chrf']:.2f}, exact match {s['exact_match']:.3f} "
            f"over {s['sentences']} sentences")
