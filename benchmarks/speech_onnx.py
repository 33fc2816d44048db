"""Streaming speech recognition in onnxruntime against rnnkit: the exported chunk graph
(``rnnkit export RUN --step``, :mod:`rnnkit.deploy.speech_export`) and rnnkit's
:class:`~rnnkit.apps.speech.streaming.StreamingRecognizer`, fed the same 640-sample chunks (40 ms at
16 kHz) of the same utterances, in turn (interleaved, one process, ``--threads`` each).

Per utterance: the compute seconds of each (the whole stream: features, front end, recurrent step,
output layer, the feeding of the state; the recogniser also decodes greedily), their ratio
(onnxruntime / rnnkit), and the greedy transcripts of both (they should agree). Printed: the
real-time factor of each (compute / audio seconds, summed), the median per-utterance ratio, and the
share of utterances whose transcripts agree.

Run (from the repository root)::

    .venv/bin/python benchmarks/speech_onnx.py runs/stream data/digits/transcripts.csv --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from rnnkit._plan import announce


def _rnnkit_stream(rec, x: np.ndarray, model) -> tuple[float, str]:
    """The recogniser fed the same chunks (the same first samples held back, then whole chunks)."""
    fe = model.featurizer
    chunk, first = 4 * fe.hop, fe.n_fft - fe.hop
    rec.reset()
    stop = first + (x.size - first) // chunk * chunk
    pieces = [x[:first]] + [x[i:i + chunk] for i in range(first, stop, chunk)]
    total = 0.0
    for piece in pieces:
        t0 = time.perf_counter()
        rec.accept(torch.from_numpy(piece))
        total += time.perf_counter() - t0
    return total, rec.partial()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a streaming speech run directory")
    parser.add_argument("csv", type=Path, help="transcripts CSV (path,text,split)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=200, help="utterances (the first of the split)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import csv

    import soundfile as sf

    import rnnkit
    from rnnkit.apps.speech.ctc_decode import greedy
    from rnnkit.apps.speech.streaming import StreamingRecognizer
    from rnnkit.apps.speech.vocab import decode
    from rnnkit.deploy.onnx_export import onnx_session
    from rnnkit.deploy.speech_export import export_speech, stream_chunks

    torch.set_num_threads(args.threads)
    model = rnnkit.load(args.run).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chunk.onnx"
        export_speech(model, path, step=True)
        session = onnx_session(path)
    rec = StreamingRecognizer(model)
    with args.csv.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("split") == args.split][: args.limit]
    if not rows:
        print(f"no {args.split!r} rows in {args.csv}", file=sys.stderr)
        return 2
    waves = [sf.read(args.csv.parent / r["path"], dtype="float32")[0] for r in rows]
    t0 = time.perf_counter()
    stream_chunks(session, model, torch.from_numpy(waves[0][None]))
    _rnnkit_stream(rec, waves[0], model)
    announce(f"{len(rows)} utterances, each streamed by onnxruntime and by rnnkit in turn",
             (time.perf_counter() - t0) * len(rows))
    audio = onnx_total = rnnkit_total = 0.0
    ratios, agree = [], 0
    for x in waves:
        t0 = time.perf_counter()
        frames = stream_chunks(session, model, torch.from_numpy(x[None]))[0]  # the same loop the export checks
        seconds_onnx = time.perf_counter() - t0
        seconds_rnnkit, text = _rnnkit_stream(rec, x, model)
        audio += x.size / model.sample_rate
        onnx_total, rnnkit_total = onnx_total + seconds_onnx, rnnkit_total + seconds_rnnkit
        ratios.append(seconds_onnx / seconds_rnnkit)
        agree += decode(greedy(frames), model.alphabet) == text
    print(f"# command: python benchmarks/speech_onnx.py {' '.join(sys.argv[1:])}")
    print(f"# torch {torch.__version__}, {args.threads} thread(s); {len(rows)} utterances, {audio:.1f} s of audio, "
          "640-sample chunks")
    print("| runtime | compute s | real-time factor |")
    print("|---|---:|---:|")
    print(f"| onnxruntime (chunk graph) | {onnx_total:.2f} | {onnx_total / audio:.4f} |")
    print(f"| rnnkit (StreamingRecognizer) | {rnnkit_total:.2f} | {rnnkit_total / audio:.4f} |")
    print(f"median per-utterance ratio onnxruntime / rnnkit: {statistics.median(ratios):.3f}; "
          f"greedy transcripts equal: {agree}/{len(rows)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
