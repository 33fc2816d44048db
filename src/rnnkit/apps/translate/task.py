"""Training a translation model: length-bucketed batches, teacher forcing with label smoothing, a time
budget, and BLEU/chrF of the trained model on the validation pairs at the end.

Batches: each epoch shuffles the pairs (seeded by ``(seed, epoch)``), sorts them by target length
within windows of 50 batches and shuffles the batches, so a batch pads little and the order still
changes every epoch. Under DDP process ``r`` of ``W`` takes rows ``r, r+W, ...`` of every batch.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from rnnkit.apps.translate.options import TranslateConfig
from rnnkit.apps.translate.tokenizer import BOS, EOS, PAD, Vocab
from rnnkit.errors import UserError
from rnnkit.training.config import TrainConfig
from rnnkit.training.task import SequenceTask
from rnnkit.training.time_budget import TimeBudget

Encoded = tuple[list[int], list[int]]


def collate(pairs: list[Encoded]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(src (S, B), lengths (B,), targets_in (T, B), targets_out (T, B))``, PAD-padded, time-major."""
    from rnnkit.apps.translate.decode import pad_batch

    src, lengths = pad_batch([s for s, _ in pairs])
    tgt_in, _ = pad_batch([[BOS, *t] for _, t in pairs])
    tgt_out, _ = pad_batch([[*t, EOS] for _, t in pairs])
    return src, lengths, tgt_in, tgt_out


class BucketBatches(Dataset):
    """One item per batch (see the module docstring); ``epoch`` is set by the task before each epoch."""

    def __init__(self, pairs: list[Encoded], batch_size: int, seed: int, shuffle: bool, rank: int = 0,
                 world: int = 1) -> None:
        self.pairs, self.batch_size, self.seed, self.shuffle = pairs, batch_size, seed, shuffle
        self.rank, self.world = rank, world
        self.epoch = 0

    def batches(self) -> list[list[int]]:
        idx = list(range(len(self.pairs)))
        if not self.shuffle:
            idx.sort(key=lambda i: len(self.pairs[i][1]))
            return [idx[s:s + self.batch_size] for s in range(0, len(idx), self.batch_size)]
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        rng.shuffle(idx)
        window = 50 * self.batch_size
        out: list[list[int]] = []
        for w in range(0, len(idx), window):
            part = sorted(idx[w:w + window], key=lambda i: len(self.pairs[i][1]))
            out += [part[s:s + self.batch_size] for s in range(0, len(part), self.batch_size)]
        out = [b for b in out if len(b) == self.batch_size] or out[:1]  # full batches only, as drop_last
        rng.shuffle(out)
        return out

    def __len__(self) -> int:
        if not self.shuffle:
            return math.ceil(len(self.pairs) / self.batch_size)
        return len(self.batches())  # the count of full batches does not depend on the epoch

    def __getitem__(self, j: int):
        if j == 0 or not hasattr(self, "_cache") or self._cache[0] != self.epoch:
            self._cache = (self.epoch, self.batches())
        rows = self._cache[1][j][self.rank::self.world]
        return collate([self.pairs[i] for i in rows])


class TranslateTask(TimeBudget, SequenceTask):
    time_dim = 0

    def __init__(self, model, train_config: TrainConfig, opts: TranslateConfig, train: list[Encoded],
                 valid: list[Encoded]) -> None:
        super().__init__(model, train_config)
        self.opts, self.train_pairs, self.valid_pairs = opts, train, valid
        self._train_ds: BucketBatches | None = None

    def budget_minutes(self) -> float | None:
        return self.opts.minutes

    def compute_loss(self, batch, state: Any) -> tuple[Tensor, Any]:
        src, lengths, tgt_in, tgt_out = batch
        logits = self.model(src, lengths, tgt_in, self.opts.sampling if self.training else 0.0)
        smoothing = self.opts.label_smoothing if self.training else 0.0
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1),
                                                 ignore_index=PAD, label_smoothing=smoothing)
        return loss, None

    def train_dataloader(self):
        rank, world = self.world
        self._train_ds = BucketBatches(self.train_pairs, self.cfg.batch_size, self.cfg.seed, True, rank, world)
        return DataLoader(self._train_ds, batch_size=None, shuffle=False)

    def val_dataloader(self):
        rank, world = self.world
        return DataLoader(BucketBatches(self.valid_pairs, self.cfg.batch_size, 0, False, rank, world),
                          batch_size=None, shuffle=False)

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        if self._train_ds is not None:
            self._train_ds.epoch = self.current_epoch


@dataclass
class Prepared:
    vocab: Vocab
    train: list[Encoded]
    valid: list[Encoded]
    valid_text: list[tuple[str, str]]
    skipped: dict[str, int] = field(default_factory=dict)


def encode_pairs(vocab: Vocab, pairs: list[tuple[str, str]], max_len: int, policy: str,
                 what: str, header: bool) -> tuple[list[Encoded], list[int]]:
    """Encoded pairs within ``max_len`` tokens per side, and the indices kept; ``policy`` "error"
    refuses a longer pair (naming its line), "skip" leaves it out."""
    out, kept = [], []
    for i, (s, t) in enumerate(pairs):
        si, ti = vocab.encode_source(s), vocab.encode_target(t)
        if len(si) > max_len or len(ti) > max_len:
            if policy == "error":
                raise UserError(f"{what}: the pair on line {i + 1 + int(header)} has {len(si)}/{len(ti)} source/target "
                                f"tokens, over --max-len {max_len}; raise it or pass --too-long skip")
            continue
        out.append((si, ti))
        kept.append(i)
    return out, kept


def prepare(opts: TranslateConfig, train_file: Path, valid_file: Path | None, vocab: Vocab | None = None) -> Prepared:
    """Read, split and encode the pairs; a vocabulary is built on the training pairs unless given (a resume
    encodes with the run's own)."""
    from rnnkit.apps.translate.data import read_pairs
    from rnnkit.apps.translate.tokenizer import build_vocab

    train = read_pairs(train_file, opts.header)
    if valid_file is not None:
        valid = read_pairs(valid_file, opts.header)
    else:  # a seeded hold-out of the training pairs
        if len(train) < 2:
            raise UserError(f"{train_file} has {len(train)} pair(s): give at least 2, or a --valid file")
        order = list(range(len(train)))
        random.Random(opts.split_seed).shuffle(order)
        n = max(1, round(opts.valid_fraction * len(train)))
        held = set(order[:n])
        valid = [p for i, p in enumerate(train) if i in held]
        train = [p for i, p in enumerate(train) if i not in held]
    if vocab is None and opts.tokenizer in ("g2p", "bpe-separate"):
        vocab = build_vocab(opts.tokenizer, [s for s, _ in train], opts.bpe_vocab, [t for _, t in train])
    elif vocab is None:
        vocab = build_vocab(opts.tokenizer, [s for s, _ in train] + [t for _, t in train], opts.bpe_vocab)
    tr, _ = encode_pairs(vocab, train, opts.max_len, opts.too_long, str(train_file), opts.header)
    va, kept = encode_pairs(vocab, valid, opts.max_len, "skip", str(valid_file or train_file), opts.header)
    if not tr or not va:
        raise UserError(f"no {'training' if not tr else 'validation'} pair is within --max-len {opts.max_len} tokens")
    return Prepared(vocab, tr, va, [valid[i] for i in kept],
                    {"train": len(train) - len(tr), "valid": len(valid) - len(va)})


def file_digests(train_file: Path, valid_file: Path | None) -> dict[str, str | None]:
    """SHA-256 of the training (and validation) file: a resume must read the data the run was trained on."""
    import hashlib

    def digest(path: Path | None) -> str | None:
        if path is None:
            return None
        try:
            return hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror or exc}") from exc

    return {"train": digest(train_file), "valid": digest(valid_file)}


def _same_data(run_dir: Path, saved: dict[str, Any], digests: dict[str, str | None]) -> None:
    """A resume names the TSV files again (paths are never read back from config.json): they must be the
    ones the run was trained on, compared by content (config.json's ``stats.sha256``)."""
    stats = saved.get("stats")
    recorded = stats.get("sha256") if isinstance(stats, dict) else None
    if not isinstance(recorded, dict):
        return  # a run written before the digests were recorded: nothing to compare with
    for which in ("train", "valid"):
        if recorded.get(which) != digests[which]:
            given = "no --valid file" if digests[which] is None and which == "valid" else f"the {which} file given"
            raise UserError(f"{given} differs from the one {run_dir} was trained on: resume with the same "
                            "TRAIN_FILE and --valid, or start a new run with --out (--init-from copies the weights)")


def run_translate(cfg: TrainConfig, opts: TranslateConfig, run_dir: Path, train_file: Path,
                  valid_file: Path | None = None, score_limit: int | None = None,
                  resume: bool = False, init_from: Path | None = None) -> dict[str, Any]:
    """Train into ``run_dir`` and score the validation pairs (all, or the first ``score_limit``).
    ``resume``: continue the run in ``run_dir`` (its vocabulary, its checkpoint; the same files)."""
    from rnnkit.apps.translate.decode import translate
    from rnnkit.apps.translate.metrics import scored_sources, scores_for
    from rnnkit.apps.translate.model import build, param_count, rnn_param_count
    from rnnkit.apps.translate.tokenizer import load_vocab, save_vocab
    from rnnkit.io.atomic import write_json_atomic
    from rnnkit.io.size_limits import check_size
    from rnnkit.training.config import as_dict
    from rnnkit.training.runner import fit, is_main_process, refuse_existing_run, seed_everything

    run_dir = Path(run_dir)
    opts.validate()
    check_size(opts.hidden, max(opts.encoder_layers, opts.decoder_layers), input_size=2 * opts.embedding_size,
               batch=cfg.batch_size, extra_parameters=2 * opts.embedding_size * opts.bpe_vocab)
    valid_file = Path(valid_file) if valid_file else None
    digests = file_digests(Path(train_file), valid_file)
    vocab = None
    if not resume:
        refuse_existing_run(run_dir)
    if resume and (run_dir / "config.json").exists():  # read and check only: nothing is written before fit
        from rnnkit.validation.run_config import read_run_config

        _same_data(run_dir, read_run_config(run_dir, "translate"), digests)
        vocab = load_vocab(run_dir)
    data = prepare(opts, Path(train_file), valid_file, vocab)
    if len(data.train) < cfg.batch_size:
        raise UserError(f"{len(data.train)} training pairs are fewer than one batch of {cfg.batch_size}: "
                        "lower --batch-size")
    seed_everything(cfg.seed, cfg.threads)
    model = build(opts, data.vocab.vocab_size)
    run_dir.mkdir(parents=True, exist_ok=True)
    if vocab is None:
        save_vocab(data.vocab, run_dir)
    stats = {"vocab_size": data.vocab.vocab_size, "parameters": param_count(model),
             "pairs": {"train": len(data.train), "valid": len(data.valid)}, "skipped_too_long": data.skipped,
             "files": {"train": str(train_file), "valid": str(valid_file) if valid_file else None},
             "sha256": digests}
    if opts.arch == "transformer":
        stats["rnn_parameters"] = rnn_param_count(opts, data.vocab.vocab_size)
        stats["transformer"] = {k: model.cfg[k] for k in ("d_model", "ff", "heads", "encoder_layers",
                                                          "decoder_layers")}
    if not cfg.quiet:
        print(f"{len(data.train):,}/{len(data.valid):,} train/valid pairs ({data.skipped['train']} training pairs "
              f"over {opts.max_len} tokens skipped); {data.vocab.kind} vocabulary of {data.vocab.vocab_size}")
        if opts.arch == "transformer":
            t, n, r = stats["transformer"], stats["parameters"], stats["rnn_parameters"]
            print(f"transformer d_model {t['d_model']}, feed-forward {t['ff']}, {t['heads']} heads, "
                  f"{t['encoder_layers']}+{t['decoder_layers']} layers: {n:,} parameters; the {opts.cell} "
                  f"encoder-decoder of these options: {r:,} ({100 * (n / r - 1):+.1f}%)")
        else:
            print(f"{opts.cell} encoder-decoder with {opts.attention} attention, {param_count(model):,} parameters")
    task = TranslateTask(model, cfg, opts, data.train, data.valid)
    threads = torch.get_num_threads()
    metrics = fit(task, run_dir, {"app": "translate", "task": as_dict(opts), "stats": stats}, resume=resume,
                  init_from=init_from)
    if not is_main_process():
        return metrics  # DDP: the main process scores the trained model and writes the run's files
    t0 = time.perf_counter()
    sources, references = scored_sources(opts.tokenizer, data.valid_text)
    if score_limit:
        sources, references = sources[:score_limit], references[:score_limit]
    try:
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        hyps = translate(model.eval(), data.vocab, sources, opts.beam, opts.alpha, opts.max_len_ratio,
                         opts.max_len, cfg.batch_size)
    finally:
        torch.set_num_threads(threads)
    valid_scores = {**scores_for(opts.tokenizer, [h[0] for h in hyps], references), "beam": opts.beam,
                    "decode_seconds": round(time.perf_counter() - t0, 2)}
    plots: list[str] = []
    if cfg.plots:
        from rnnkit.apps.translate.plots import write_attention_maps

        plots = write_attention_maps(run_dir, model, data.vocab, [s for s, _ in data.valid_text], opts.max_len,
                                     opts.max_len_ratio)
    metrics = {**metrics, "translate": {"stopped_by_time": task.stopped_by_time, "valid": valid_scores,
                                        "attention_plots": plots, **stats}}
    write_json_atomic(run_dir / "metrics.json", metrics)
    return metrics
