"""Reading and writing WAV files (soundfile), with every problem as one line.

Policy for the sample rate: a file at another rate than the model's is resampled (band-limited, by
FFT) and a note says so on stderr; raw PCM on standard input has no header and must already be at
the model's rate. Refused (one line, exit 2 in the CLI): a missing, empty, truncated or non-WAV file,
more than one channel, no samples, and silence (peak below :data:`SILENCE_PEAK`).
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

import numpy as np

from rnnkit.errors import UserError

#: a file whose peak amplitude (full scale 1.0) stays below this is refused as silence
SILENCE_PEAK = 1e-3


class AudioError(UserError):
    """A WAV file that cannot be used."""


def _check_riff(path: Path, data: bytes) -> None:
    """RIFF/WAVE magic, and a ``data`` chunk as long as its header says (else: truncated)."""
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RIFX") or data[8:12] != b"WAVE":
        raise AudioError(f"{path} is not a WAV file (no RIFF/WAVE header)")
    pos = 12
    while pos + 8 <= len(data):
        chunk, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if chunk == b"data":
            have = len(data) - pos - 8
            if size != 0xFFFFFFFF and have < size:
                raise AudioError(f"{path} is truncated: its header declares {size} bytes of audio, the file has "
                                 f"{have}")
            return
        pos += 8 + size + (size & 1)
    raise AudioError(f"{path} is truncated or damaged: no audio data chunk")


def read_wav(path: str | os.PathLike, rate: int, *, note=None) -> np.ndarray:
    """Mono float32 samples of a WAV file at ``rate`` Hz (resampled with a note if it is at another rate)."""
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path} not found")
    if path.is_dir():
        raise AudioError(f"{path} is a directory, not a WAV file")
    data = path.read_bytes()
    if not data:
        raise AudioError(f"{path} is empty")
    _check_riff(path, data)
    import io

    try:
        samples, file_rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile's LibsndfileError and friends
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AudioError(f"{path} is not a readable WAV file ({first})") from exc
    if samples.shape[1] != 1:
        raise AudioError(f"{path} has {samples.shape[1]} channels; give mono audio "
                         f"(e.g. sox {path.name} -c 1 mono.wav)")
    x = samples[:, 0]
    if x.size == 0:
        raise AudioError(f"{path} has no samples")
    if file_rate != rate:
        (note or _stderr)(f"note: {path} is {file_rate} Hz; resampled to the model's {rate} Hz")
        x = resample(x, file_rate, rate)
    check_not_silent(x, str(path))
    return x


def check_not_silent(x: np.ndarray, what: str) -> None:
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak < SILENCE_PEAK:
        raise AudioError(f"{what} is silent (peak amplitude {peak:.2g} of full scale): nothing to recognise")


def _stderr(text: str) -> None:
    print(text, file=sys.stderr)


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """``x`` at ``rate_out`` Hz: the spectrum cut (or zero-extended) to the new length (band-limited)."""
    if rate_in == rate_out or x.size == 0:
        return x.astype(np.float32)
    n_out = max(1, round(x.size * rate_out / rate_in))
    spec = np.fft.rfft(x.astype(np.float64))
    keep = min(spec.size, n_out // 2 + 1)
    out_spec = np.zeros(n_out // 2 + 1, dtype=np.complex128)
    out_spec[:keep] = spec[:keep]
    return (np.fft.irfft(out_spec, n=n_out) * (n_out / x.size)).astype(np.float32)


def wav_bytes(x: np.ndarray, rate: int) -> bytes:
    """16-bit PCM WAV bytes of float samples in [-1, 1] (clipped)."""
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(x, -1.0, 1.0), rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()
