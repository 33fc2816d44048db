"""Translation from Python: ``TranslateModel(**options).fit(pairs)``, ``.translate(sentences)``, ``.evaluate(pairs)``.

The same code path as ``rnnkit translate train | evaluate | translate``, with the same defaults:
``fit`` writes the pairs as a TSV into the run directory and resolves the options exactly as the
command resolves its flags (app defaults < ``config`` file < options), so a model fitted here and
one trained by the CLI on the same file with the same seed are the same model. Options take the
names of the config file and ``--set`` (``tokenizer``, ``cell``, ``hidden``, ``max_epochs``, ``lr``,
``seed``...).

    from rnnkit.apps.translate import TranslateModel

    model = TranslateModel(tokenizer="char", max_epochs=20, seed=0).fit(pairs)  # [(source, target)...]
    model.translate(["ein Haus"], beam=5)        # ["a house"]
    model.evaluate(test_pairs)                   # BLEU, chrF (sacrebleu) or WER/PER (g2p)
    model.save("runs/de-en"); TranslateModel.load("runs/de-en").translate(["ein Haus"])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rnnkit.apps.run_model import RunDirModel
from rnnkit.errors import UserError
from rnnkit.io.atomic import write_text_atomic

#: the files the API writes its pairs to, inside the run directory
FIT_FILE, VALID_FILE, GIVEN_FILE = "data/fit.tsv", "data/valid.tsv", "data/given.tsv"

Pairs = Sequence[tuple[str, str]] | str | Path


def pairs_tsv(pairs: Sequence[tuple[str, str]]) -> str:
    """``pairs`` as the TSV the commands read (no header). A tab or line break inside a sentence, or
    a pair that is not two strings, is refused."""
    lines = []
    for k, pair in enumerate(pairs):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(s, str) for s in pair)):
            raise UserError(f"pairs[{k}]: expected (source, target) strings, got {pair!r:.80}")
        for side, text in zip(("source", "target"), pair, strict=True):
            if "\t" in text or "\n" in text or "\r" in text:
                raise UserError(f"pairs[{k}]: the {side} holds a tab or a line break")
        lines.append(f"{pair[0]}\t{pair[1]}\n")
    if not lines:
        raise UserError("pairs: no sentence pairs")
    return "".join(lines)


class TranslateModel(RunDirModel):
    """An attention encoder-decoder (any cell) or the matched Transformer, with the CLI's behaviour
    and defaults.

    ``options``: any option of ``rnnkit translate train``'s config file (docs/translate.md), e.g.
    ``tokenizer``, ``arch``, ``cell``, ``attention``, ``hidden``, ``max_epochs``, ``lr``, ``seed``;
    ``config``: a YAML file of options (the options given here override it).
    """

    app = "translate"
    options_class = "rnnkit.apps.translate.options:TranslateConfig"

    def fit(self, pairs: Pairs, valid: Pairs | None = None,
            run_dir: str | Path | None = None) -> TranslateModel:
        """Train on ``pairs`` (a TSV path, read with the ``header`` option, or a list of (source,
        target) strings) into ``run_dir`` (default: a new temporary folder; :meth:`save` copies it),
        validating on ``valid`` (default: a held-out share, as the command). Returns ``self``."""
        from .cli import train_run

        out = self.new_run_dir(run_dir)
        flags: dict[str, Any] = {"quiet": True, **self.options}
        train_file = self._file(pairs, out / FIT_FILE, flags)
        valid_file = None if valid is None else self._file(valid, out / VALID_FILE, flags)
        train_run(out, train_file, valid_file, self.config, flags)
        self.run_dir = out
        return self

    def translate(self, sentences: str | Sequence[str], beam: int | None = None, alpha: float | None = None,
                  max_len_ratio: float | None = None, n_best: int = 1,
                  batch_size: int = 64) -> str | list[str] | list[list[str]]:
        """The translation of each sentence (beam search; the run's settings unless given), as
        ``rnnkit translate translate`` prints them. One sentence in, one string out; with ``n_best``
        above 1, a list of the best translations for each sentence."""
        from .cli import translate_sentences

        single = isinstance(sentences, str)
        texts = [sentences] if single else list(sentences)
        if not all(isinstance(t, str) for t in texts):
            raise UserError("sentences: expected strings")
        outs = translate_sentences(self.trained_run_dir(), texts, beam, alpha, max_len_ratio, n_best, batch_size)
        result: list = [o[0] for o in outs] if n_best == 1 else outs
        return result[0] if single else result

    def evaluate(self, pairs: Pairs, beam: int | None = None, alpha: float | None = None,
                 max_len_ratio: float | None = None, batch_size: int = 64) -> dict:
        """Scores on ``pairs`` as ``rnnkit translate evaluate`` reports them: BLEU and chrF with their
        sacrebleu signatures and exact match (word and phoneme error rates for a g2p run)."""
        from .cli import evaluate_pairs

        run_dir = self.trained_run_dir()
        header: dict[str, Any] = {}
        path = self._file(pairs, run_dir / GIVEN_FILE, header)
        result, _ = evaluate_pairs(run_dir, path, beam, alpha, max_len_ratio, header.get("header"), batch_size)
        return result

    @staticmethod
    def _file(pairs: Pairs, target: Path, flags: dict[str, Any]) -> Path:
        """A path as given; pairs written as a header-less TSV to ``target`` (and ``header`` set
        off in ``flags``: the file has none)."""
        if isinstance(pairs, (str, Path)):
            return Path(pairs)
        write_text_atomic(target, pairs_tsv(pairs))
        flags["header"] = False
        return target
