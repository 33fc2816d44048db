"""Speech recognition from Python: ``SpeechModel(**options).fit(csv)``, ``.transcribe(audio)``, ``.evaluate(csv)``.

The same code path as ``rnnkit speech train | evaluate | transcribe``, with the same defaults: options
are resolved exactly as the command resolves its flags (app defaults < ``config`` file < options), so a
model fitted here and one trained by the CLI on the same transcripts with the same seed are the same
model. Options take the names of the config file and ``--set`` (``mode``, ``cell``, ``hidden``,
``layers``, ``max_epochs``, ``lr``, ``seed``...). Training data is a transcripts CSV
(``path,text,split``, as ``rnnkit speech synth`` writes), whose WAV paths are relative to the CSV.

    from rnnkit.apps.speech import SpeechModel

    model = SpeechModel(hidden=128, max_epochs=20, seed=0).fit("digits/transcripts.csv")
    model.transcribe(["one.wav", waveform])       # paths or 1-D arrays at the model's rate
    model.evaluate("digits/transcripts.csv", split="test")   # WER, CER (jiwer), real-time factor
    model.save("runs/digits"); SpeechModel.load("runs/digits").transcribe(["one.wav"])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rnnkit.apps.run_model import RunDirModel
from rnnkit.errors import UserError


class SpeechModel(RunDirModel):
    """A CTC speech recogniser (convolutional front end + any rnnkit cell, or the Transformer baseline),
    offline or streaming, with the CLI's behaviour and defaults.

    ``options``: any option of ``rnnkit speech train``'s config file (docs/speech.md); ``config``: a
    YAML file of options (the options given here override it).
    """

    app = "speech"
    options_class = "rnnkit.apps.speech.options:SpeechConfig"

    def fit(self, transcripts: str | Path, run_dir: str | Path | None = None) -> SpeechModel:
        """Train on the ``train`` rows of a transcripts CSV, validating on its ``valid`` rows, into
        ``run_dir`` (default: a new temporary folder; :meth:`save` copies it). Returns ``self``."""
        from .cli import train_run

        if not isinstance(transcripts, (str, Path)):
            raise UserError("transcripts: the path of a transcripts CSV (path,text,split)")
        out = self.new_run_dir(run_dir)
        flags: dict[str, Any] = {"quiet": True, **self.options}
        train_run(out, Path(transcripts), self.config, flags)
        self.run_dir = out
        return self

    def transcribe(self, audio: str | Path | np.ndarray | Sequence[str | Path | np.ndarray], beam: int = 1,
                   lexicon: str | Path | None = None) -> str | list[str]:
        """The text of each WAV path or 1-D waveform (float samples at the model's sample rate), as
        ``rnnkit speech transcribe`` decodes it (prefix beam search with ``beam`` > 1, spelling only
        the words of ``lexicon`` if given). One item in, one string out."""
        from .cli import transcribe_audio

        single = isinstance(audio, (str, Path)) or (isinstance(audio, np.ndarray) and audio.ndim == 1)
        items = [audio] if single else list(audio)
        if not items:
            raise UserError("audio: nothing to transcribe")
        texts = transcribe_audio(self.trained_run_dir(), items, beam, None if lexicon is None else Path(lexicon))
        return texts[0] if single else texts

    def evaluate(self, transcripts: str | Path, split: str | None = None, beam: int = 1,
                 lexicon: str | Path | None = None) -> dict:
        """WER and CER (jiwer) on the rows of a transcripts CSV (only ``split``'s if given), as
        ``rnnkit speech evaluate`` reports them, with the real-time factor of the decoding."""
        from .cli import evaluate_rows

        result, _, _ = evaluate_rows(self.trained_run_dir(), Path(transcripts), split, beam,
                                     None if lexicon is None else Path(lexicon))
        return result
