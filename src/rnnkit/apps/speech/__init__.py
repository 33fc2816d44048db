"""Speech recognition, offline and streaming (``rnnkit speech``, docs/speech.md).

Data is synthesised with espeak-ng (:mod:`.synth`) or read from WAV files and a transcript CSV
(:mod:`.dataset`); features are log-mel filterbanks computed in torch (:mod:`.features`); models are a
2-D convolutional front end (x4 subsampling, :mod:`.frontend`) under an rnnkit recurrent stack or a
Transformer encoder, trained with CTC (:mod:`.model`, :mod:`.transformer`); decoding is greedy or
prefix beam search (:mod:`.ctc_decode`); :mod:`.streaming` runs a unidirectional model on audio as
it arrives; :mod:`.api` (:class:`SpeechModel`) is the same from Python.
"""


def __getattr__(name: str):
    if name == "SpeechModel":  # imported on first use, as the CLI imports its pieces
        from .api import SpeechModel

        return SpeechModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
