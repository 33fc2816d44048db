"""``rnnkit speech``: synthesise, train, evaluate and transcribe (docs/speech.md).

Heavy imports (torch, Lightning, soundfile, jiwer) happen inside the commands. Paths are never read
back from a run's config.json: evaluate and transcribe take the files they read as arguments.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from rnnkit.apps.speech.options import TRAIN_DEFAULTS
from rnnkit.cli_options import (
    ConfigFile,
    InitFrom,
    Minutes,
    NewRunDir,
    Quiet,
    ResumeDir,
    SetOptions,
    Threads,
    training_flags,
)
from rnnkit.errors import UserError
from rnnkit.training.cli_support import parse_set
from rnnkit.validation.run_config import register_task_config

register_task_config("speech", "rnnkit.apps.speech.options:SpeechConfig")

app = typer.Typer(help="Speech recognition: CTC models (any cell), offline and streaming, on espeak-ng speech.",
                  no_args_is_help=True)

MODEL, TRAIN = "Model", "Training"


def _load_run(run_dir: Path):
    """(model, task options) of a speech run; one line for anything else."""
    import rnnkit
    import rnnkit.apps.speech.model
    import rnnkit.apps.speech.transformer  # registers speech.transformer_ctc
    from rnnkit.apps.speech.options import SpeechConfig
    from rnnkit.io.saving import CorruptRunFile
    from rnnkit.validation.run_config import read_run_config

    if not Path(run_dir).is_dir():
        raise UserError(f"run directory {run_dir} not found")
    saved = read_run_config(run_dir, "speech")
    opts = SpeechConfig(**saved["task"])
    model = rnnkit.load(run_dir)
    if not hasattr(model, "featurizer"):
        raise CorruptRunFile(f"{run_dir}/config.json: the model is not a speech model")
    return model, opts


def train_run(out: Path, csv_file: Path, config: Path | None, flags: dict, resume: bool = False,
              init_from: Path | None = None):
    """``train``'s work (also ``SpeechModel.fit``'s): options resolved as app defaults < the resumed
    run's < ``config`` < ``flags`` (None: not given), then one training run into ``out``. Returns
    (metrics, training config)."""
    from rnnkit.apps.speech.options import SpeechConfig
    from rnnkit.apps.speech.task import run_speech
    from rnnkit.training.cli_support import resolve_app_run

    cfg, opts = resolve_app_run("speech", TRAIN_DEFAULTS, SpeechConfig, flags, config, out if resume else None)
    metrics = run_speech(cfg.validate(), opts, out, csv_file, init_from=init_from, resume=resume)
    return metrics, cfg


def _check_beam(beam: int) -> None:
    if not 1 <= beam <= 100:
        raise UserError(f"--beam must be from 1 to 100, got {beam}")


def _lexicon(model, lexicon: Path | None):
    from rnnkit.apps.speech.ctc_decode import load_lexicon

    return load_lexicon(lexicon, model.alphabet) if lexicon is not None else None


def evaluate_rows(run_dir: Path, csv_file: Path, split: str | None = None, beam: int = 1,
                  lexicon: Path | None = None):
    """``evaluate``'s work: (scores, the CSV rows scored, their hypotheses)."""
    import time

    from rnnkit.apps.speech.dataset import load_audio, read_transcripts
    from rnnkit.apps.speech.metrics import error_rates
    from rnnkit.apps.speech.task import transcribe_waves

    _check_beam(beam)
    model, _ = _load_run(run_dir)
    words = _lexicon(model, lexicon)
    rows = read_transcripts(csv_file, ("path", "text") + (("split",) if split else ()), model.alphabet)
    if split is not None:
        rows = [r for r in rows if r.split == split]
        if not rows:
            raise UserError(f"{csv_file} has no rows of split {split!r}")
    waves = load_audio(rows, model.sample_rate)
    t0 = time.perf_counter()
    hyps = transcribe_waves(model, waves, beam, lexicon=words)
    seconds = time.perf_counter() - t0
    audio = sum(w.size for w in waves) / model.sample_rate
    result = {"file": str(csv_file), "split": split, **error_rates([r.text for r in rows], hyps), "beam": beam,
              "lexicon": str(lexicon) if lexicon else None, "voices": len({r.voice for r in rows}),
              "audio_seconds": round(audio, 1),
              "decode_seconds": round(seconds, 2), "real_time_factor": round(seconds / max(audio, 1e-9), 4)}
    return result, rows, hyps


def transcribe_audio(run_dir: Path, audio: list, beam: int = 1, lexicon: Path | None = None) -> list[str]:
    """``transcribe``'s work on files: the text of each WAV path (read and resampled to the model's
    rate; every file checked before any is decoded) or 1-D float array at the model's rate."""
    import numpy as np

    from rnnkit.apps.speech.audio import read_wav
    from rnnkit.apps.speech.task import transcribe_waves

    _check_beam(beam)
    model, _ = _load_run(run_dir)
    words = _lexicon(model, lexicon)
    waves = []
    for k, item in enumerate(audio):
        if isinstance(item, (str, Path)):
            waves.append(read_wav(Path(item), model.sample_rate))
            continue
        wave = np.asarray(item, dtype=np.float32)
        if wave.ndim != 1 or wave.size == 0 or not np.isfinite(wave).all():
            raise UserError(f"audio[{k}]: expected a non-empty 1-D array of finite samples at "
                            f"{model.sample_rate} Hz, got shape {wave.shape}")
        waves.append(wave)
    return transcribe_waves(model, waves, beam, lexicon=words)


@app.command()
def synth(
    out: Annotated[Path, typer.Option(help="directory to create (wavs/ and transcripts.csv)")],
    task: Annotated[str, typer.Option(help="digits | commands")] = "digits",
    n: Annotated[int, typer.Option(help="utterances in all (10% valid, 10% test by default)")] = 1000,
    seed: Annotated[int, typer.Option(help="the same seed gives the same files")] = 0,
    valid_voices: Annotated[int, typer.Option(help="voices held out for validation")] = 8,
    test_voices: Annotated[int, typer.Option(help="voices held out for test")] = 8,
    valid_fraction: Annotated[float, typer.Option(help="share of the utterances spoken by validation voices")] = 0.1,
    test_fraction: Annotated[float, typer.Option(help="share of the utterances spoken by test voices")] = 0.1,
    noise: Annotated[float, typer.Option(help="probability of additive noise (SNR 5-30 dB)")] = 0.3,
    reverb: Annotated[float, typer.Option(help="probability of the reverberation filter")] = 0.3,
) -> None:
    """Synthesise a data set with espeak-ng: WAV files + transcripts.csv, test voices never in training."""
    import json

    from rnnkit.apps.speech.synth import synth_dataset

    summary = synth_dataset(out, task, n, seed, valid_voices=valid_voices, test_voices=test_voices,
                            valid_fraction=valid_fraction, test_fraction=test_fraction, noise=noise, reverb=reverb)
    typer.echo(json.dumps(summary))


@app.command()
@training_flags(TRAIN_DEFAULTS)
def train(
    csv_file: Annotated[Path, typer.Argument(help="transcripts.csv (path,text,split; train and valid rows; with "
                                                  "--resume: the run's file again)")],
    out: NewRunDir = None,
    resume: ResumeDir = None,
    config: ConfigFile = None,
    init_from: InitFrom = None,
    mode: Annotated[str | None, typer.Option(help="offline | streaming [offline]", rich_help_panel=MODEL)] = None,
    arch: Annotated[str | None, typer.Option(help="rnn | transformer [rnn]", rich_help_panel=MODEL)] = None,
    cell: Annotated[str | None, typer.Option(help="lstm | gru | mingru | ... [lstm]", rich_help_panel=MODEL)] = None,
    hidden: Annotated[int | None, typer.Option(help="units per direction [256]", rich_help_panel=MODEL)] = None,
    layers: Annotated[int | None, typer.Option(help="[3]", rich_help_panel=MODEL)] = None,
    channels: Annotated[int | None, typer.Option(help="front-end channels [32]", rich_help_panel=MODEL)] = None,
    n_mels: Annotated[int | None, typer.Option(help="[40]", rich_help_panel=MODEL)] = None,
    norm: Annotated[str | None, typer.Option(help="global | utterance [global]", rich_help_panel=MODEL)] = None,
    dropout: Annotated[float | None, typer.Option(help="[0.1]", rich_help_panel=MODEL)] = None,
    spec_augment: Annotated[bool | None, typer.Option("--spec-augment/--no-spec-augment", rich_help_panel=TRAIN)]
    = None,
    beam: Annotated[int | None, typer.Option(help="beam for the final validation scores [1: greedy]")] = None,
    minutes: Minutes = None,
    quiet: Quiet = False,
    set_: SetOptions = None,
    training: dict | None = None,
) -> None:
    """Train a CTC model on the CSV's train rows into a run directory (or continue one with --resume RUN_DIR);
    report validation WER/CER."""
    import json

    if (out is None) == (resume is None):
        raise UserError("give exactly one of --out DIR (a new run) or --resume RUN_DIR")
    if resume is not None and init_from is not None:
        raise UserError("--init-from starts a new run: give it with --out, not --resume")
    flags = {"mode": mode, "arch": arch, "cell": cell, "hidden": hidden, "layers": layers, "channels": channels,
             "n_mels": n_mels, "norm": norm, "dropout": dropout, "spec_augment": spec_augment, "beam": beam,
             "minutes": minutes, **(training or {}), "quiet": True if quiet else None, **parse_set(set_)}
    out = resume if resume is not None else out
    metrics, cfg = train_run(out, csv_file, config, flags, resume=resume is not None, init_from=init_from)
    from rnnkit.training.runner import is_main_process

    if not is_main_process():
        return  # DDP: the main process reports
    v = metrics["speech"]["valid"]
    if not cfg.quiet:
        typer.echo(f"{metrics['status']}: step {metrics['global_step']} in {metrics['train_seconds']:.0f} s; "
                   f"validation (held-out voices, beam {v['beam']}): WER {100 * v['wer']:.2f}%, "
                   f"CER {100 * v['cer']:.2f}% over {v['utterances']} utterances")
        typer.echo(f"run directory: {out}; evaluate with `rnnkit speech evaluate {out} CSV --split test`")
    else:
        typer.echo(json.dumps(v))


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="a run directory of `rnnkit speech train`")],
    csv_file: Annotated[Path, typer.Argument(help="transcripts CSV (path,text[,split])")],
    split: Annotated[str | None, typer.Option(help="only the rows of this split (e.g. test)")] = None,
    beam: Annotated[int, typer.Option(help="prefix beam search width (1: greedy)")] = 1,
    hypotheses: Annotated[Path | None, typer.Option(help="also write path<TAB>hypothesis lines here")] = None,
    lexicon: Annotated[Path | None, typer.Option(help="word list: the beam search only spells its words "
                                                      "(synth writes DIR/words.txt)")] = None,
    threads: Threads = None,
) -> None:
    """WER and CER (jiwer) of a run on the rows of a transcript CSV."""
    import json

    import torch

    from rnnkit.io.atomic import write_text_atomic

    if threads is not None:
        torch.set_num_threads(threads)
    result, rows, hyps = evaluate_rows(run_dir, csv_file, split, beam, lexicon)
    if hypotheses is not None:
        write_text_atomic(hypotheses, "".join(f"{r.path}\t{h}\n" for r, h in zip(rows, hyps, strict=True)))
    typer.echo(json.dumps(result, indent=2))


@app.command()
def transcribe(
    run_dir: Annotated[Path, typer.Argument(help="a run directory of `rnnkit speech train`")],
    files: Annotated[list[Path] | None, typer.Argument(help="WAV files (mono; other rates are resampled)")] = None,
    stream: Annotated[bool, typer.Option("--stream", help="read raw 16-bit mono PCM at the model's rate from "
                                                          "standard input")] = False,
    chunk_ms: Annotated[int, typer.Option(help="--stream: milliseconds of audio per read")] = 20,
    beam: Annotated[int, typer.Option(help="prefix beam search width for files (1: greedy)")] = 1,
    lexicon: Annotated[Path | None, typer.Option(help="files: a word list for the beam search")] = None,
) -> None:
    """Transcribe WAV files (one `path<TAB>text` line each) or, with --stream, audio from standard input
    (partial hypotheses as they change, then the final one and the latency)."""
    _check_beam(beam)
    if stream:
        if files:
            raise UserError("--stream reads standard input: give no files (pipe raw PCM in)")
        if not 1 <= chunk_ms <= 10_000:
            raise UserError(f"--chunk-ms must be from 1 to 10000, got {chunk_ms}")
        model, _ = _load_run(run_dir)
        _stream(model, sys.stdin.buffer, chunk_ms)
        return
    if not files:
        raise UserError("give WAV files to transcribe, or --stream to read standard input")
    for f, text in zip(files, transcribe_audio(run_dir, files, beam, lexicon), strict=True):
        typer.echo(f"{f}\t{text}")


def _stream(model, source, chunk_ms: int) -> None:
    import time

    import numpy as np
    import torch

    from rnnkit.apps.speech.audio import check_not_silent
    from rnnkit.apps.speech.streaming import StreamingRecognizer

    try:
        rec = StreamingRecognizer(model)
    except ValueError as exc:
        raise UserError(f"this run is an offline (bidirectional) model; --stream needs one trained with "
                        f"--mode streaming ({exc})") from exc
    nbytes = 2 * max(1, model.sample_rate * chunk_ms // 1000)
    shown, peak, total, leftover = "", 0.0, 0, b""
    compute: list[float] = []
    while True:
        data = source.read(nbytes)
        if not data:
            break
        data = leftover + data
        cut = len(data) - len(data) % 2
        data, leftover = data[:cut], data[cut:]
        x = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
        total += x.size
        peak = max(peak, float(np.abs(x).max()) if x.size else 0.0)
        t0 = time.perf_counter()
        rec.accept(torch.from_numpy(x))
        compute.append(time.perf_counter() - t0)
        text = rec.partial()
        if text != shown:
            shown = text
            typer.echo(f"partial: {text}")
    if total == 0:
        raise UserError("standard input held no audio: pipe raw 16-bit mono PCM at the model's rate")
    check_not_silent(np.array([peak], dtype=np.float32), "the audio on standard input")
    typer.echo(f"final: {rec.partial()}")
    audio = total / model.sample_rate
    ms = sorted(1000 * c for c in compute)
    typer.echo(f"latency: {len(ms)} chunks of {chunk_ms} ms, compute per chunk median {ms[len(ms) // 2]:.2f} ms, "
               f"max {ms[-1]:.2f} ms; real-time factor {sum(compute) / audio:.3f} "
               f"(the last chunk's result {1000 * compute[-1]:.2f} ms after its audio arrived); "
               f"the model looks ahead 0 ms, frames are {1000 * rec.frame_seconds:.0f} ms", err=True)


def demo(out_dir: Path, quick: bool) -> list[str]:
    """Synthesise a few hundred utterances, train a small offline model for 36 s, transcribe held-out voices."""
    import shutil

    from rnnkit.apps.speech.metrics import error_rates
    from rnnkit.apps.speech.options import SpeechConfig
    from rnnkit.apps.speech.synth import EspeakMissing, synth_dataset
    from rnnkit.apps.speech.task import run_speech, transcribe_waves
    from rnnkit.training.config import TrainConfig

    shutil.rmtree(out_dir, ignore_errors=True)
    try:
        info = synth_dataset(out_dir / "data", "digits", 80 if quick else 400, 0, valid_voices=4, test_voices=4,
                             valid_fraction=0.1, test_fraction=0.15)
    except EspeakMissing as exc:
        return [f"speech: skipped ({exc})"]
    tcfg = TrainConfig(max_epochs=500, batch_size=16, lr=3e-3, quiet=True, threads=1, tensorboard=False,
                       clip_norm=5.0, plots=False, schedule="cosine", min_lr=1e-4, warmup_steps=20).validate()
    opts = SpeechConfig(mode="offline", hidden=64, layers=2, channels=16, minutes=0.1 if quick else 0.6).validate()
    run = out_dir / "run"
    m = run_speech(tcfg, opts, run, out_dir / "data" / "transcripts.csv")
    model, _ = _load_run(run)
    from rnnkit.apps.speech.dataset import load_audio, read_transcripts

    rows = [r for r in read_transcripts(out_dir / "data" / "transcripts.csv", ("path", "text", "split"),
                                        model.alphabet) if r.split == "test"]
    hyps = transcribe_waves(model, load_audio(rows, model.sample_rate))
    e = error_rates([r.text for r in rows], hyps)
    sample = f"'{rows[0].text}' -> '{hyps[0]}'"
    return [f"speech: {info['utterances']['train']} synthetic digit strings ({info['hours'] * 60:.1f} min of audio), "
            f"bidirectional LSTM-CTC trained {m['train_seconds']:.0f} s: test WER {100 * e['wer']:.1f}%, CER "
            f"{100 * e['cer']:.1f}% on {len(rows)} utterances of {len({r.voice for r in rows})} held-out voices "
            f"(a tiny demo run: see docs/speech.md for real figures)", f"speech: e.g. {sample}"]
