"""Word and character error rates with jiwer (corpus level: errors over reference words/characters)."""

from __future__ import annotations


def error_rates(references: list[str], hypotheses: list[str]) -> dict[str, float | int]:
    """``{"wer", "cer", "utterances", "words", "sentence_error_rate"}``; an empty hypothesis counts as
    all deletions."""
    import jiwer

    if len(references) != len(hypotheses):
        raise ValueError("references and hypotheses differ in number")
    if not references:
        nan = float("nan")
        return {"wer": nan, "cer": nan, "utterances": 0, "words": 0, "sentence_error_rate": nan}
    wer = jiwer.wer(references, hypotheses)
    cer = jiwer.cer(references, hypotheses)
    wrong = sum(r != h for r, h in zip(references, hypotheses, strict=True))
    return {"wer": round(float(wer), 4), "cer": round(float(cer), 4), "utterances": len(references),
            "words": sum(len(r.split()) for r in references),
            "sentence_error_rate": round(wrong / len(references), 4)}
