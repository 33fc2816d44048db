"""The language-modelling task: TBPTT over a continuous stream (stateful batching), AR/TAR, time budget.

The training split is one token stream laid out as ``batch_size`` parallel streams
(:class:`~rnnkit.training.tbptt.StatefulStreams`); each batch is the next ``bptt`` tokens of every
stream and the recurrent state flows, detached, from one batch into the next. An "epoch" is
``epoch_steps`` batches (default: the whole stream), continuing where the last one stopped, so a
large corpus is validated often; the state carries across such epochs too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from rnnkit.errors import UserError
from rnnkit.training.config import TrainConfig
from rnnkit.training.task import SequenceTask
from rnnkit.training.tbptt import StatefulStreams
from rnnkit.training.time_budget import TimeBudget

ARCHS = ("rnn", "transformer")



@dataclass
class TextConfig:
    files: list[str] = field(default_factory=list)  # files/folders; empty: the default corpus
    pattern: str = "*.txt"  # files taken from a folder
    tokenizer: str = "char"  # char | bpe
    bpe_vocab: int = 1024
    valid_fraction: float = 0.05
    test_fraction: float = 0.05
    split_seed: int = 0
    arch: str = "rnn"  # rnn | transformer
    cell: str = "lstm"
    embedding_size: int | None = None  # None: hidden (tied weights need no projection)
    hidden: int = 256
    num_layers: int = 1
    tie_weights: bool = True
    embedding_dropout: float = 0.0
    input_dropout: float = 0.0
    variational_dropout: float = 0.0
    weight_drop: float = 0.0
    zoneout: float = 0.0
    output_dropout: float = 0.1
    layer_norm: bool = False
    backend: str = "auto"
    ar: float = 0.0  # activation regularisation (AWD-LSTM alpha)
    tar: float = 0.0  # temporal activation regularisation (beta)
    heads: int = 4  # transformer
    transformer_layers: int = 2
    bptt: int | None = None  # None: 32 for the recurrent model (the state carries on), 128 for the Transformer
    epoch_steps: int | None = 200  # batches per epoch (validation after each); None: the whole stream
    minutes: float | None = None  # stop training after this many minutes (then validate and save)

    def validate(self) -> TextConfig:
        from rnnkit.cells.registry import cell_names

        if isinstance(self.files, str):
            self.files = [self.files]
        if not isinstance(self.files, list) or not all(isinstance(f, str) for f in self.files):
            raise UserError(f"files must be a list of paths, got {self.files!r}")
        if self.arch not in ARCHS:
            raise UserError(f"unknown arch {self.arch!r}; choose one of: {', '.join(ARCHS)}")
        if self.bptt is None:
            # the recurrent state carries context across windows, so short windows lose little and
            # give more updates per token (measured on Shakespeare, docs/benchmarks.md); the
            # Transformer sees only its window
            self.bptt = 32 if self.arch == "rnn" else 128
        if self.tokenizer not in ("char", "bpe"):
            raise UserError(f"unknown tokenizer {self.tokenizer!r}; choose char or bpe")
        if self.cell not in cell_names():
            raise UserError(f"unknown cell {self.cell!r}; choose one of: {', '.join(cell_names())}")
        for name in ("embedding_size", "hidden", "num_layers", "heads", "transformer_layers", "bptt"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.bpe_vocab < 260:
            raise UserError(f"bpe_vocab must be at least 260 (the 256 bytes and a few merges), got {self.bpe_vocab}")
        for name in ("embedding_dropout", "input_dropout", "variational_dropout", "weight_drop", "zoneout",
                     "output_dropout"):
            v = getattr(self, name)
            if not 0 <= v < 1:
                raise UserError(f"{name} must be in [0, 1), got {v}")
        if self.epoch_steps is not None and self.epoch_steps < 1:
            raise UserError(f"epoch_steps must be at least 1, got {self.epoch_steps}")
        if self.minutes is not None and self.minutes <= 0:
            raise UserError(f"minutes must be positive, got {self.minutes}")
        return self


def build_model(cfg: TextConfig, vocab_size: int):
    from rnnkit.apps.text.model import RecurrentLM, TransformerLM, param_count, transformer_width

    rnn = RecurrentLM(vocab_size, cfg.cell, cfg.embedding_size or cfg.hidden, cfg.hidden, cfg.num_layers,
                      cfg.tie_weights, cfg.embedding_dropout, cfg.input_dropout, cfg.variational_dropout,
                      cfg.weight_drop, cfg.zoneout, cfg.output_dropout, cfg.layer_norm, cfg.backend)
    if cfg.arch == "rnn":
        return rnn
    # the baseline: about the parameter count of the recurrent model these options describe
    d = transformer_width(param_count(rnn), vocab_size, cfg.transformer_layers, cfg.bptt, cfg.heads)
    return TransformerLM(vocab_size, d, cfg.transformer_layers, cfg.heads, cfg.bptt, cfg.output_dropout)


class _EpochWindows(Dataset):
    """``steps`` windows of the streams per epoch, continuing from the previous epoch's position."""

    def __init__(self, streams: StatefulStreams, steps: int | None) -> None:
        self.streams = streams
        self.steps = min(steps or len(streams), len(streams))
        self.epoch = 0

    def start(self, epoch: int) -> int:
        return (epoch * self.steps) % len(self.streams)

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, j: int) -> Tensor:
        return self.streams[(self.start(self.epoch) + j) % len(self.streams)]


class TextTask(TimeBudget, SequenceTask):
    stateful = True
    time_dim = 0
    epoch_carry = True  # an epoch of epoch_steps windows goes on from the last one's state (checkpointed)

    def __init__(self, model, train_config: TrainConfig, text: TextConfig, train_ids: Tensor, valid_ids: Tensor,
                 tokens_per_char: float) -> None:
        super().__init__(model, train_config)
        self.text = text
        self.train_ids, self.valid_ids = train_ids, valid_ids
        self.tokens_per_char = tokens_per_char
        self._windows: _EpochWindows | None = None

    def compute_loss(self, batch: Tensor, state: Any) -> tuple[Tensor, Any]:
        x, y = batch[:-1], batch[1:]
        logits, state, h = self.model(x, state)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        if self.training and (self.text.ar or self.text.tar):
            reg = loss.new_zeros(())
            if self.text.ar:
                reg = reg + self.text.ar * h.pow(2).mean()
            if self.text.tar and h.shape[0] > 1:
                reg = reg + self.text.tar * (h[1:] - h[:-1]).pow(2).mean()
            loss = loss + reg
        return loss, state

    def train_dataloader(self):
        rank, world = self.world
        streams = StatefulStreams(self.train_ids, self.cfg.batch_size, self.text.bptt, 1, rank, world)
        self._windows = _EpochWindows(streams, self.text.epoch_steps)
        return DataLoader(self._windows, batch_size=None, shuffle=False)

    def val_dataloader(self):
        rank, world = self.world
        rows = valid_rows(len(self.valid_ids), self.cfg.batch_size, self.text.bptt, world)
        return DataLoader(StatefulStreams(self.valid_ids, rows, self.text.bptt, 1, rank, world),
                          batch_size=None, shuffle=False)

    def budget_minutes(self) -> float | None:
        return self.text.minutes

    @torch.no_grad()
    def carry_template(self, rows: int) -> Any:
        """The state the model leaves for ``rows`` streams (one token, evaluation mode: nothing random)."""
        training = self.model.training
        self.model.eval()
        try:
            return self.model(torch.zeros(1, rows, dtype=torch.long), None)[1]
        finally:
            self.model.train(training)

    def on_train_epoch_start(self) -> None:
        carry = self._carry
        super().on_train_epoch_start()
        if self._windows is not None:
            self._windows.epoch = self.current_epoch
            if self._windows.start(self.current_epoch) != 0:
                self._carry = carry  # the stream goes on where the last epoch stopped



def valid_rows(n_tokens: int, batch_size: int, bptt: int, world: int = 1) -> int:
    """Parallel validation streams: at most ``batch_size``, each at least one window long."""
    rows = min(batch_size, n_tokens // (bptt + 1))
    rows -= rows % world
    if rows < 1:
        raise UserError(f"the validation split has {n_tokens} tokens, fewer than one window of bptt+1 = "
                        f"{bptt + 1}: lower --bptt, raise --valid-fraction or give more text")
    return rows


@dataclass
class Prepared:
    tokenizer: Any
    ids: dict[str, Tensor]
    chars: dict[str, int]
    split: Any

    def tokens_per_char(self, which: str) -> float:
        return len(self.ids[which]) / max(1, self.chars[which])


def prepare(text: TextConfig, tokenizer=None) -> Prepared:
    """Read, split and tokenise the corpus (a tokenizer is trained on the training split unless given)."""
    from rnnkit.apps.text.data import read_documents, split_documents
    from rnnkit.apps.text.tokenizer import build_tokenizer

    docs = read_documents([Path(f) for f in text.files], text.pattern)
    split = split_documents(docs, text.valid_fraction, text.test_fraction, text.split_seed)
    if tokenizer is None:
        tokenizer = build_tokenizer(text.tokenizer, [d.text for d in split.train], text.bpe_vocab)
    ids, chars = {}, {}
    for which in ("train", "valid", "test"):
        s = split.text(which)
        ids[which] = torch.tensor(tokenizer.encode(s), dtype=torch.long)
        chars[which] = len(s)
    return Prepared(tokenizer, ids, chars, split)


def run_text(cfg: TrainConfig, text: TextConfig, run_dir: Path, resume: bool = False,
             init_from: Path | None = None) -> dict[str, Any]:
    """Build and train a language model into ``run_dir`` (CLI, demo and tests)."""
    from rnnkit.apps.text.metrics import summary
    from rnnkit.apps.text.model import param_count
    from rnnkit.apps.text.tokenizer import load_tokenizer, save_tokenizer
    from rnnkit.io.atomic import write_json_atomic
    from rnnkit.io.confine import recorded_path
    from rnnkit.io.size_limits import check_size
    from rnnkit.training.config import as_dict
    from rnnkit.training.runner import fit, is_main_process, refuse_existing_run, seed_everything

    run_dir = Path(run_dir)
    text = TextConfig(**{**as_dict(text), "files": [str(Path(f).resolve()) for f in text.files]}).validate()
    emb = text.embedding_size or text.hidden
    check_size(text.hidden, text.num_layers, input_size=emb, seq_len=text.bptt or 0, batch=cfg.batch_size,
               extra_parameters=2 * emb * (text.bpe_vocab if text.tokenizer == "bpe" else 256))
    data = prepare(text, load_tokenizer(run_dir) if resume and (run_dir / "tokenizer.json").exists() else None)
    need = cfg.batch_size * (text.bptt + 1)
    if len(data.ids["train"]) < need:
        raise UserError(f"the corpus is smaller than one batch: the training split has {len(data.ids['train'])} "
                        f"tokens, one batch of {cfg.batch_size} streams x (bptt {text.bptt} + 1) needs {need}; "
                        "lower --batch-size or --bptt, or give more text")
    valid_rows(len(data.ids["valid"]), cfg.batch_size, text.bptt)
    seed_everything(cfg.seed, cfg.threads)
    model = build_model(text, data.tokenizer.vocab_size)
    tpc = data.tokens_per_char("valid")
    task = TextTask(model, cfg, text, data.ids["train"], data.ids["valid"], tpc)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        refuse_existing_run(run_dir)
        save_tokenizer(data.tokenizer, run_dir)
    stats = {"vocab_size": data.tokenizer.vocab_size, "parameters": param_count(model),
             "documents": {w: len(getattr(data.split, w)) for w in ("train", "valid", "test")},
             "split_mode": data.split.mode, "valid_documents": data.split.names("valid")[:50],
             "test_documents": data.split.names("test")[:50],
             "characters": data.chars, "tokens": {w: len(v) for w, v in data.ids.items()},
             "valid_tokens_per_char": tpc}
    if resume and (run_dir / "config.json").exists():
        _same_corpus(run_dir, stats)
    if not cfg.quiet:
        print(f"corpus: {sum(data.chars.values()):,} characters, {len(data.split.train)}/{len(data.split.valid)}/"
              f"{len(data.split.test)} train/valid/test documents ({data.split.mode}); {data.tokenizer.kind} "
              f"tokenizer, {data.tokenizer.vocab_size} tokens; {text.arch} model with {param_count(model):,} "
              "parameters")
    recorded = {**as_dict(text), "files": [recorded_path(f, run_dir) for f in text.files]}
    metrics = fit(task, run_dir, {"app": "text", "task": recorded, "stats": stats}, resume=resume,
                  init_from=init_from)
    if not is_main_process():
        return metrics  # DDP: the main process scores the trained model and writes the run's files
    curve = []
    log = run_dir / "log.csv"
    if log.exists():
        import csv

        with open(log, encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if row.get("val_loss"):
                    curve.append({"step": int(float(row["step"])),
                                  "val_bpc": float(row["val_loss"]) * tpc / math.log(2)})
    extra: dict[str, Any] = {"stopped_by_time": task.stopped_by_time, "valid_curve": curve, **stats}
    if metrics.get("val_loss") is not None and math.isfinite(metrics["val_loss"]):
        extra["valid"] = summary(float(metrics["val_loss"]), tpc)
    else:  # stopped (max_steps) before the epoch's validation: measure the saved weights now
        total, count = evaluate_ids(model, data.ids["valid"], text.bptt, cfg.batch_size)
        extra["valid"] = summary(total / count, tpc)
    best = metrics.get("best") or {}
    if best.get("metric") == "val_loss":
        extra["best_valid"] = summary(float(best["value"]), tpc)
    metrics = {**metrics, "text": extra}
    write_json_atomic(run_dir / "metrics.json", metrics)
    return metrics


def _same_corpus(run_dir: Path, stats: dict[str, Any]) -> None:
    """A resume may name the corpus again (it moved): it must be the corpus the run was trained on,
    compared by its characters and tokens per split (config.json's ``stats``)."""
    from rnnkit.io.saving import read_config

    saved = read_config(run_dir).get("stats")
    if not isinstance(saved, dict) or "characters" not in saved:
        return  # an older run without stats: nothing to compare with
    for key in ("characters", "tokens"):
        if saved.get(key) != stats[key]:
            raise UserError(f"the corpus read now differs from the one {run_dir} was trained on ({key} per split "
                            f"{stats[key]} vs {str(saved.get(key))[:80]}): name the same corpus, or start a new "
                            "run with --out (--init-from copies the weights)")


@torch.no_grad()
def evaluate_ids(model, ids: Tensor, bptt: int, batch: int = 16) -> tuple[float, int]:
    """(sum of the token losses in nats, tokens scored) over ``ids`` as ``batch`` parallel streams."""
    model.eval()
    if getattr(model, "context", None) is None:
        bptt = max(bptt, 256)  # a recurrent model carries its state: longer chunks, fewer calls
    rows = max(1, min(batch, (len(ids) - 1) // max(1, bptt)))
    L = (len(ids) - 1) // rows
    if L < 1:
        raise UserError(f"{len(ids)} tokens are too few to evaluate (at least 2 are needed)")
    data = ids[: rows * L + 1]
    x_all = torch.stack([data[r * L:(r + 1) * L] for r in range(rows)], 1)
    y_all = torch.stack([data[r * L + 1:(r + 1) * L + 1] for r in range(rows)], 1)
    state, total, count = None, 0.0, 0
    for s in range(0, L, bptt):
        x, y = x_all[s:s + bptt], y_all[s:s + bptt]
        logits, state, _ = model(x, state)
        total += float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                                                         reduction="sum"))
        count += y.numel()
    return total, count
