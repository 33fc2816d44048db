"""``rnnkit text``: train, evaluate and sample language models (docs/text.md).

Heavy imports (torch, Lightning, tokenizers) happen inside the commands.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from rnnkit.apps.text.defaults import TRAIN_DEFAULTS
from rnnkit.cli_options import (
    ConfigFile,
    InitFrom,
    Minutes,
    NewRunDir,
    Quiet,
    ResumeDir,
    SetOptions,
    training_flags,
)
from rnnkit.errors import UserError
from rnnkit.training.cli_support import parse_set
from rnnkit.validation import check_mapping, opt

app = typer.Typer(help="Text generation: character or BPE language models (LSTM/GRU/... or a Transformer).",
                  no_args_is_help=True)

TRAIN = "Training"
DATA = "Data"
MODEL = "Model"
#: how a user names the corpus again when config.json's paths lie outside the run directory
CORPUS_AGAIN = {"train": "the corpus paths as arguments (rnnkit text train --resume RUN PATH...)",
                "evaluate": "--corpus PATH (once per file or folder), or evaluate --file FILE",
                "diagnose": "--data FILE"}


@dataclass
class EvaluateOptions:
    """``rnnkit text evaluate``'s options (rnnkit.validation)."""

    split: str = opt("test", choices=("test", "valid", "train"))
    batch: int = opt(16, min=1, max=65_536, help="parallel streams")


@dataclass
class GenerateOptions:
    """``rnnkit text generate``'s options. A temperature below 0.01 divides the logits into overflow
    (every token infinitely likely): 0 is the way to ask for greedy decoding."""

    max_tokens: int = opt(500, min=0, max=1_000_000)
    temperature: float = opt(0.8, min=0.01, max=100, special=(0.0,), help="0: greedy")
    top_k: int = opt(0, min=0, help="0: all tokens")
    top_p: float = opt(1.0, gt=0, max=1)
    seed: int = opt(0, min=0)
    unknown: str = opt("error", choices=("error", "skip"))


def run_tokenizer(run_dir: Path, model):
    """The run's tokenizer, checked against the model: a vocabulary larger than the model's embedding
    would index past it (an IndexError deep in torch)."""
    from rnnkit.apps.text.tokenizer import TOKENIZER_FILE, load_tokenizer
    from rnnkit.io.saving import CorruptRunFile

    tok = load_tokenizer(run_dir)
    embedding = getattr(model, "embedding", None)
    rows = getattr(embedding, "num_embeddings", None)
    if rows is not None and tok.vocab_size > rows:
        raise CorruptRunFile(f"{Path(run_dir) / TOKENIZER_FILE} has {tok.vocab_size} tokens, the model only "
                             f"{rows}: the file does not belong to this model")
    return tok


def saved_task(run_dir: Path, saved: dict, corpus: list | None, command: str) -> dict:
    """config.json's ``task`` with its corpus ``files`` confined to the run directory
    (io/confine.config_path), or replaced by ``corpus`` when the user named it again."""
    from rnnkit.io.confine import config_path

    task = saved.get("task", {})
    if not isinstance(task, dict):
        raise UserError(f"{run_dir}/config.json: 'task' must be a JSON object")
    if corpus:
        return {**task, "files": [str(Path(p)) for p in corpus]}
    files = task.get("files", [])
    if not isinstance(files, list):
        raise UserError(f"{run_dir}/config.json: task.files must be a list of paths; give {CORPUS_AGAIN[command]}")
    return {**task, "files": [str(config_path(run_dir, f, f"task.files[{i}]", CORPUS_AGAIN[command]))
                              for i, f in enumerate(files)]}


def _without_corpus(saved: dict) -> dict:
    """config.json's task for a command that reads a text file the user named, not the corpus."""
    task = saved.get("task", {})
    return {**task, "files": []} if isinstance(task, dict) else task


def text_config(run_dir: Path, task: dict):
    """The run's TextConfig, or a one-line error for a config.json that does not describe one."""
    from rnnkit.apps.text.task import TextConfig

    try:
        return TextConfig(**task).validate()
    except TypeError as exc:  # keys this version does not know
        raise UserError(f"{run_dir}/config.json: 'task' does not describe a text run") from exc


def resolve_text_run(flags: dict, config: Path | None, resume: Path | None):
    """(TrainConfig, TextConfig): text defaults < resumed run < --config file < flags."""
    from rnnkit.apps.text.task import TextConfig
    from rnnkit.training.cli_support import resolve_layers
    from rnnkit.training.config import read_config_file

    layers: list[tuple[str, dict]] = [("text defaults", dict(TRAIN_DEFAULTS))]
    if resume is not None:
        from rnnkit.validation.run_config import read_run_config

        if not (Path(resume) / "config.json").exists():
            raise UserError(f"{resume} has no config.json: nothing to resume; start it with --out {resume}")
        saved = read_run_config(resume, "text")
        task = saved_task(resume, saved, flags.get("files"), "train")
        layers.append((str(Path(resume) / "config.json"), {**saved.get("train", {}), **task}))
    if config is not None:
        layers.append((str(config), read_config_file(config)))
    layers.append(("--", flags))
    return resolve_layers(TextConfig, layers)


@app.command()
@training_flags(TRAIN_DEFAULTS)
def train(
    paths: Annotated[list[Path] | None, typer.Argument(help="UTF-8 text files or folders (default: the Python "
                                                           "documentation topics, pydoc_data.topics)")] = None,
    out: NewRunDir = None,
    config: ConfigFile = None,
    resume: ResumeDir = None,
    init_from: InitFrom = None,
    pattern: Annotated[str | None, typer.Option(help="files taken from folders [*.txt]", rich_help_panel=DATA)] = None,
    tokenizer: Annotated[str | None, typer.Option(help="char | bpe [char]", rich_help_panel=DATA)] = None,
    bpe_vocab: Annotated[int | None, typer.Option(help="BPE vocabulary size [1024]", rich_help_panel=DATA)] = None,
    valid_fraction: Annotated[float | None, typer.Option(help="[0.05]", rich_help_panel=DATA)] = None,
    test_fraction: Annotated[float | None, typer.Option(help="[0.05]", rich_help_panel=DATA)] = None,
    arch: Annotated[str | None, typer.Option(help="rnn | transformer (same parameter count) [rnn]",
                                             rich_help_panel=MODEL)] = None,
    cell: Annotated[str | None, typer.Option(help="lstm | gru | rnn_tanh | ... [lstm]", rich_help_panel=MODEL)] = None,
    embedding_size: Annotated[int | None, typer.Option(help="[= hidden]", rich_help_panel=MODEL)] = None,
    hidden: Annotated[int | None, typer.Option(help="[256]", rich_help_panel=MODEL)] = None,
    num_layers: Annotated[int | None, typer.Option(help="[1]", rich_help_panel=MODEL)] = None,
    tie_weights: Annotated[bool | None, typer.Option("--tie-weights/--no-tie-weights", rich_help_panel=MODEL)] = None,
    embedding_dropout: Annotated[float | None, typer.Option(rich_help_panel=MODEL)] = None,
    input_dropout: Annotated[float | None, typer.Option(rich_help_panel=MODEL)] = None,
    variational_dropout: Annotated[float | None, typer.Option(rich_help_panel=MODEL)] = None,
    weight_drop: Annotated[float | None, typer.Option(rich_help_panel=MODEL)] = None,
    output_dropout: Annotated[float | None, typer.Option(help="[0.1]", rich_help_panel=MODEL)] = None,
    ar: Annotated[float | None, typer.Option(help="activation regularisation", rich_help_panel=MODEL)] = None,
    tar: Annotated[float | None, typer.Option(help="temporal activation regularisation", rich_help_panel=MODEL)] = None,
    bptt: Annotated[int | None, typer.Option(help="TBPTT window in tokens [rnn 32, transformer 128]",
                                             rich_help_panel=TRAIN)] = None,
    epoch_steps: Annotated[int | None, typer.Option(help="batches per epoch (validation after each) [200]",
                                                    rich_help_panel=TRAIN)] = None,
    minutes: Minutes = None,
    quiet: Quiet = False,
    set_: SetOptions = None,
    training: dict | None = None,
) -> None:
    """Train a language model on text files into a run directory (TBPTT over a continuous stream)."""
    from rnnkit.apps.text.task import run_text

    if (out is None) == (resume is None):
        raise UserError("give exactly one of --out DIR (a new run) or --resume RUN_DIR")
    flags = {
        "files": [str(p) for p in paths] if paths else None, "pattern": pattern, "tokenizer": tokenizer,
        "bpe_vocab": bpe_vocab, "valid_fraction": valid_fraction, "test_fraction": test_fraction, "arch": arch,
        "cell": cell, "embedding_size": embedding_size, "hidden": hidden, "num_layers": num_layers,
        "tie_weights": tie_weights, "embedding_dropout": embedding_dropout, "input_dropout": input_dropout,
        "variational_dropout": variational_dropout, "weight_drop": weight_drop, "output_dropout": output_dropout,
        "ar": ar, "tar": tar, "bptt": bptt, "epoch_steps": epoch_steps, "minutes": minutes, **(training or {}),
        "quiet": True if quiet else None, **parse_set(set_),
    }
    cfg, text = resolve_text_run(flags, config, resume)
    run_dir = resume if resume is not None else out
    metrics = run_text(cfg, text, run_dir, resume=resume is not None, init_from=init_from)
    from rnnkit.training.runner import is_main_process

    if not is_main_process():
        return  # DDP: the main process reports
    if not cfg.quiet:
        t = metrics["text"]
        v = t.get("valid")
        typer.echo(f"{metrics['status']}: step {metrics['global_step']} in {metrics['train_seconds']:.0f} s"
                   + (f"; validation: {v['bits_per_char']:.3f} bits/char, perplexity {v['perplexity']:.2f}, "
                      f"cross-entropy {v['cross_entropy']:.4f} nats/token" if v else ""))
        typer.echo(f"run directory: {run_dir}; sample with `rnnkit text generate {run_dir}`")


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="a run directory of `rnnkit text train`")],
    split: Annotated[str, typer.Option(help="test | valid | train (of the training corpus)")] = "test",
    file: Annotated[Path | None, typer.Option(help="evaluate on this UTF-8 text file instead")] = None,
    batch: Annotated[int, typer.Option(help="parallel streams")] = 16,
    corpus: Annotated[list[Path] | None, typer.Option(help="the training corpus (files or folders), when it "
                                                           "lies outside the run directory")] = None,
) -> None:
    """Cross-entropy, perplexity and bits per character of a trained model on held-out text."""
    import json

    from rnnkit.apps.text.metrics import summary

    res = evaluate_run(run_dir, split, file, batch, corpus)
    s = summary(res["cross_entropy"], res["tokens_per_char"])
    typer.echo(json.dumps({**res, **s}, indent=2))


def evaluate_run(run_dir: Path, split: str = "test", file: Path | None = None, batch: int = 16,
                 corpus: list[Path] | None = None) -> dict:
    import torch

    import rnnkit
    from rnnkit.apps.text.data import read_text_file
    from rnnkit.apps.text.task import evaluate_ids, prepare
    from rnnkit.validation.run_config import read_run_config

    check_mapping(EvaluateOptions, {"split": split, "batch": batch}, "the command line")
    if not Path(run_dir).is_dir():
        raise UserError(f"run directory {run_dir} not found")
    cfg = read_run_config(run_dir, "text")
    model = rnnkit.load(run_dir)
    tok = run_tokenizer(run_dir, model)
    # the corpus paths are confined only when they are read: --file needs none of them
    text_cfg = text_config(run_dir, saved_task(run_dir, cfg, corpus, "evaluate") if file is None
                           else _without_corpus(cfg))
    if file is not None:
        s = read_text_file(Path(file))
        if not s:
            raise UserError(f"{file} is empty")
        ids, chars, source = torch.tensor(tok.encode(s), dtype=torch.long), len(s), str(file)
    else:
        data = prepare(text_cfg, tok)
        ids, chars, source = data.ids[split], data.chars[split], f"{split} split"
        if len(ids) < 2:
            raise UserError(f"the {split} split is empty (test_fraction 0?): evaluate --split valid or --file")
    total, count = evaluate_ids(model, ids, text_cfg.bptt, batch)
    return {"source": source, "tokens": count, "cross_entropy": total / count, "tokens_per_char": len(ids) / chars}


@app.command()
def generate(
    run_dir: Annotated[Path, typer.Argument(help="a run directory of `rnnkit text train`")],
    prompt: Annotated[str, typer.Option(help="text to continue (default: start after a blank line)")] = "",
    max_tokens: Annotated[int, typer.Option(help="tokens to generate")] = 500,
    temperature: Annotated[float, typer.Option(help="0: greedy")] = 0.8,
    top_k: Annotated[int, typer.Option(help="sample from the k most likely tokens (0: all)")] = 0,
    top_p: Annotated[float, typer.Option(help="nucleus sampling: smallest set with this probability")] = 1.0,
    seed: Annotated[int, typer.Option(help="sampling seed (same seed, same text)")] = 0,
    unknown: Annotated[str, typer.Option(help="prompt characters outside the vocabulary: error | skip")] = "error",
    stream: Annotated[bool, typer.Option("--stream/--no-stream", help="print tokens as they come")] = True,
    echo_prompt: Annotated[bool, typer.Option("--echo-prompt/--no-echo-prompt", help="print the prompt first")] = True,
) -> None:
    """Continue a prompt with a trained model, streaming the text as it is produced."""
    pieces = sample_run(run_dir, prompt, max_tokens, temperature, top_k, top_p, seed, unknown, "the command line")
    if echo_prompt:
        sys.stdout.write(prompt)
    if stream:
        for piece in pieces:
            sys.stdout.write(piece)
            sys.stdout.flush()
    else:
        sys.stdout.write("".join(pieces))
    sys.stdout.write("\n")
    sys.stdout.flush()


def sample_run(run_dir: Path, prompt: str, max_tokens: int, temperature: float, top_k: int, top_p: float,
               seed: int, unknown: str, where: str):
    """The continuation of ``prompt`` by a trained run, as text pieces (one per token), after the
    sampling options are checked (``where`` names their source in errors)."""
    import rnnkit
    from rnnkit.apps.text.generate import generate_stream
    from rnnkit.validation.run_config import read_run_config

    check_mapping(GenerateOptions, {"max_tokens": max_tokens, "temperature": temperature, "top_k": top_k,
                                    "top_p": top_p, "seed": seed, "unknown": unknown}, where)
    if not Path(run_dir).is_dir():
        raise UserError(f"run directory {run_dir} not found")
    read_run_config(run_dir, "text")
    model = rnnkit.load(run_dir)
    tok = run_tokenizer(run_dir, model)
    return generate_stream(model, tok, prompt, max_tokens, temperature, top_k, top_p, seed, unknown)


def diagnose_inputs(run_dir: Path, model, config: dict, data: Path | None, size: int):
    """For ``rnnkit diagnose RUN_DIR``: ``size`` windows of ``bptt`` tokens from the validation split
    (or from the text file ``data``), evenly spaced; the loss is the next-token cross-entropy."""
    import torch

    from rnnkit.apps.text.data import read_text_file
    from rnnkit.apps.text.task import prepare

    if getattr(model, "rnn", None) is None:
        raise UserError("only recurrent text models can be diagnosed (this run is a transformer)")
    tok = run_tokenizer(run_dir, model)
    text_cfg = text_config(run_dir, saved_task(run_dir, config, None, "diagnose") if data is None
                           else _without_corpus(config))
    if data is not None:
        ids, source = torch.tensor(tok.encode(read_text_file(Path(data))), dtype=torch.long), str(data)
    else:
        ids, source = prepare(text_cfg, tok).ids["valid"], "the validation split"
    T = max(text_cfg.bptt, 128)  # long enough to see gradients fade
    if len(ids) < T + 1:
        raise UserError(f"{source} has {len(ids)} tokens, fewer than one window of bptt+1 = {T + 1}")
    starts = torch.linspace(0, len(ids) - T - 1, size).long()
    window = torch.stack([ids[s:s + T + 1] for s in starts.tolist()], 1)  # (T+1, size)
    x, y = window[:-1], window[1:]

    def loss(output):
        logits = output[0]
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    return x, loss


def demo(out_dir: Path, quick: bool) -> list[str]:
    """`rnnkit demo`'s text part: a short char-LSTM on the Python docs topics, then a sample."""
    import math
    import shutil

    import rnnkit
    from rnnkit.apps.text.generate import generate
    from rnnkit.apps.text.task import TextConfig, run_text
    from rnnkit.apps.text.tokenizer import load_tokenizer
    from rnnkit.training.config import TrainConfig

    shutil.rmtree(out_dir, ignore_errors=True)
    seconds = 5 if quick else 14
    cfg = TrainConfig(max_epochs=1000, batch_size=16, lr=5e-3, clip_norm=1.0, quiet=True, threads=1,
                      tensorboard=False, plots=not quick, log_every_n_steps=10)
    text = TextConfig(hidden=192, bptt=64, epoch_steps=15, minutes=seconds / 60,
                      output_dropout=0.0)
    print(f"training a character LSTM on the Python documentation topics (pydoc_data.topics) for "
          f"{seconds} s into {out_dir} ...")
    m = run_text(cfg, text, out_dir)
    model, tok = rnnkit.load(out_dir), load_tokenizer(out_dir)
    prompt = "The "
    sample = generate(model, tok, prompt, max_tokens=160, temperature=0.7, seed=0)
    t = m["text"]
    line = " ".join((prompt + sample).split())
    return [f"{t['parameters']:,}-parameter char LSTM, {m['global_step']} steps in {m['train_seconds']:.0f} s: "
            f"validation {t['valid']['bits_per_char']:.2f} bits/char (a uniform guess over its {t['vocab_size']} "
            f"symbols: {math.log2(t['vocab_size']):.1f}; a real run trains minutes to hours)",
            f"sample (temperature 0.7, seed 0): {line[:200]!r}",
            f"run directory {out_dir}; try `rnnkit text generate {out_dir} --prompt 'The '`"]
