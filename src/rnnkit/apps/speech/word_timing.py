"""Speech with word boundaries: espeak-ng's C library (``libespeak-ng.so.1``, installed with the
program) through ctypes, for measuring when a streaming model emits a word after it was spoken
(benchmarks/speech_streaming.py).

The library reports a WORD event at the sample where each word starts; a word's end is the last
10 ms window above 1% of the utterance's peak energy before the next word starts (or before the
end). Rate, pitch and word gap are the command's ``-s``, ``-p`` and ``-g``; no noise or reverb is added.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np

from rnnkit.errors import UserError

_OUTPUT_SYNCHRONOUS, _POS_CHARACTER, _EVENT_END_LIST, _EVENT_WORD = 2, 1, 0, 1
_RATE, _PITCH, _WORDGAP = 1, 3, 7


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class WordTimedSpeech:
    """``speak(text, voice, wpm, pitch, gap) -> (samples at the library's rate, [(start, end) per word])``."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            self.lib = ctypes.CDLL(name)
        except OSError as exc:
            raise UserError("the espeak-ng library is not installed: apt-get install espeak-ng") from exc
        self.rate = int(self.lib.espeak_Initialize(_OUTPUT_SYNCHRONOUS, 0, None, 0))
        if self.rate <= 0:
            raise UserError("espeak-ng's library failed to start (espeak_Initialize)")
        self._chunks: list[np.ndarray] = []
        self._starts: list[int] = []
        self._callback = _CALLBACK(self._collect)  # kept alive as long as the library may call it
        self.lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, n, events) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_END_LIST:
            if events[i].type == _EVENT_WORD:
                self._starts.append(int(events[i].sample))
            i += 1
        return 0

    def speak(self, text: str, voice: str, wpm: int, pitch: int, gap: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
        self._chunks, self._starts = [], []
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            lang, _, variant = voice.partition("+")  # a language whose voice file has another name: en-gb -> gmw/en
            file = voice_files().get(lang)
            if file is None or self.lib.espeak_SetVoiceByName(f"{file}+{variant}".encode()) != 0:
                raise UserError(f"espeak-ng has no voice {voice!r}")
        for param, value in ((_RATE, wpm), (_PITCH, pitch), (_WORDGAP, gap)):
            self.lib.espeak_SetParameter(param, int(value), 0)
        data = text.encode()
        self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, 0, None, None)
        self.lib.espeak_Synchronize()
        x = (np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)).astype(np.float32) / 32768
        return x, word_spans(x, self._starts, self.rate)


def voice_files() -> dict[str, str]:
    """Language -> voice file of espeak-ng's English voices (``espeak-ng --voices=en``)."""
    import subprocess

    from rnnkit.apps.speech.synth import espeak_binary

    out = subprocess.run([espeak_binary(), "--voices=en"], capture_output=True, text=True, check=False).stdout
    return {p[1]: p[4] for p in (line.split() for line in out.splitlines()[1:]) if len(p) >= 5}


def word_spans(x: np.ndarray, starts: list[int], rate: int) -> list[tuple[int, int]]:
    """``(start, end)`` samples of each word: from its start event to its last energetic 10 ms window."""
    win = max(1, rate // 100)
    n = x.size // win
    energy = np.square(x[: n * win].reshape(n, win)).mean(1) if n else np.zeros(0)
    threshold = 0.01 * (energy.max() if energy.size else 0.0)
    spans = []
    for i, s in enumerate(starts):
        stop = starts[i + 1] if i + 1 < len(starts) else x.size
        w0, w1 = s // win, max(s // win, stop // win)
        loud = np.nonzero(energy[w0:w1] > threshold)[0]
        end = (w0 + int(loud[-1]) + 1) * win if loud.size else stop
        spans.append((s, min(end, x.size)))
    return spans
