"""Streaming speech recognition on CPU: real-time factor and emission delay after the end of a word.

For a streaming run of ``rnnkit speech train --mode streaming`` and the rows of one split of a
transcript CSV (the held-out test voices of ``rnnkit speech synth``):

- real-time factor: the test WAVs are fed to :class:`rnnkit.apps.speech.streaming.StreamingRecognizer`
  in ``--chunk-ms`` pieces (as ``rnnkit speech transcribe --stream`` does), timing every ``accept``
  call (features, front end, recurrent step, output layer, greedy decoding); RTF = compute seconds /
  audio seconds. The streamed hypotheses' WER/CER are reported too.
- emission delay: each row is synthesised again, clean, through espeak-ng's library with the same
  voice, rate, pitch and word gap, which reports where every word starts
  (:mod:`rnnkit.apps.speech.word_timing`; a word ends at its last energetic 10 ms). For every word of
  the streamed hypothesis matched to a reference word (difflib on the word lists), the delay is the
  time its last character was emitted (the end of the audio chunk that produced it, plus that
  chunk's compute time) minus the end of the word in the audio.

The warm-up (the first row streamed, and synthesised once when the delay is measured) gives the
expected duration, printed before the rows run. The default 200 rows take well under two minutes on
2 cores (about 10 s of compute for 329 s of audio, docs/speech.md), so there is no quick preset.

Run (from the repository root)::

    .venv/bin/python benchmarks/speech_streaming.py runs/speech-stream data/digits/transcripts.csv --threads 1
"""

from __future__ import annotations

import argparse
import difflib
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from rnnkit._plan import announce


def _stream(rec, x: np.ndarray, chunk: int, rate: int) -> tuple[float, list[float]]:
    """Feed ``x`` in ``chunk``-sample pieces; (compute seconds, emission time of each greedy token)."""
    rec.reset()
    total, times = 0.0, []
    for i in range(0, x.size, chunk):
        piece = torch.from_numpy(x[i:i + chunk])
        n_before = len(rec.tokens)
        t0 = time.perf_counter()
        rec.accept(piece)
        dt = time.perf_counter() - t0
        total += dt
        arrival = min(i + chunk, x.size) / rate
        times += [arrival + dt] * (len(rec.tokens) - n_before)
    return total, times


def _hyp_words(tokens: list[int], times: list[float], alphabet: str) -> list[tuple[str, float]]:
    """(word, emission time of its last character) of a greedy token sequence."""
    words, cur, last = [], "", 0.0
    for tok, t in zip(tokens, times, strict=True):
        ch = alphabet[tok - 1]
        if ch == " ":
            if cur:
                words.append((cur, last))
            cur = ""
        else:
            cur, last = cur + ch, t
    if cur:
        words.append((cur, last))
    return words


def main(argv: Sequence[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a streaming run directory")
    p.add_argument("csv", type=Path, help="transcripts.csv of rnnkit speech synth")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=200, help="rows of the split to measure")
    p.add_argument("--chunk-ms", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-delay", action="store_true", help="skip the emission delay (needs espeak-ng's library)")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    import csv

    import rnnkit
    from rnnkit.apps.speech.audio import read_wav, resample
    from rnnkit.apps.speech.metrics import error_rates
    from rnnkit.apps.speech.streaming import StreamingRecognizer

    model = rnnkit.load(args.run)
    rec = StreamingRecognizer(model)
    rate = model.sample_rate
    chunk = rate * args.chunk_ms // 1000
    with open(args.csv, encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r.get("split") == args.split][: args.limit]
    if not rows:
        sys.exit(f"{args.csv} has no rows of split {args.split!r}")
    first = read_wav(args.csv.parent / rows[0]["path"], rate)
    _stream(rec, first, chunk, rate)  # warm-up: loads the C++ step
    start = time.perf_counter()
    _stream(rec, first, chunk, rate)
    per_row = time.perf_counter() - start  # streaming one row (rows are alike: short utterances)
    tts = None
    if not args.no_delay:
        from rnnkit.apps.speech.word_timing import WordTimedSpeech

        tts = WordTimedSpeech()
        r = rows[0]
        start = time.perf_counter()
        tts.speak(r["text"], r["voice"], int(r["wpm"]), int(r["pitch"]), int(r["gap"]))
        per_row = 2 * per_row + time.perf_counter() - start  # streamed twice, synthesised once
    announce(f"{len(rows)} rows of split {args.split}, {args.chunk_ms} ms chunks"
             + ("" if tts is None else ", streamed again with word timing for the emission delay"), per_row * len(rows))
    audio = compute = 0.0
    refs, hyps = [], []
    for r in rows:
        x = read_wav(args.csv.parent / r["path"], rate)
        seconds, _ = _stream(rec, x, chunk, rate)
        audio, compute = audio + x.size / rate, compute + seconds
        refs.append(r["text"])
        hyps.append(rec.partial())
    result = {"run": str(args.run), "rows": len(rows), "split": args.split, "chunk_ms": args.chunk_ms,
              "threads": torch.get_num_threads(), "audio_seconds": round(audio, 1),
              "compute_seconds": round(compute, 2), "real_time_factor": round(compute / audio, 4),
              "streamed": error_rates(refs, hyps)}
    if tts is not None:
        delays, matched, words = [], 0, 0
        for r in rows:
            x, spans = tts.speak(r["text"], r["voice"], int(r["wpm"]), int(r["pitch"]), int(r["gap"]))
            ref_words = r["text"].split()
            if len(spans) != len(ref_words):
                continue  # the library reported another word count: no reliable ends for this row
            x16 = resample(x, tts.rate, rate)
            ends = [e / tts.rate for _, e in spans]
            _, times = _stream(rec, x16, chunk, rate)
            hw = _hyp_words([t for t, _ in rec.tokens], times, model.alphabet)
            sm = difflib.SequenceMatcher(a=ref_words, b=[w for w, _ in hw], autojunk=False)
            words += len(ref_words)
            for block in sm.get_matching_blocks():
                for k in range(block.size):
                    delays.append(hw[block.b + k][1] - ends[block.a + k])
                    matched += 1
        if delays:
            q = statistics.quantiles(delays, n=10)
            result["emission_delay_ms"] = {"median": round(1000 * statistics.median(delays)),
                                           "p10": round(1000 * q[0]), "p90": round(1000 * q[-1]),
                                           "words_matched": matched, "words": words}
    print(json.dumps(result, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
