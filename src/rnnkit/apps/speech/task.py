"""Training a speech model: CTC on log-mel features of the CSV's ``train`` rows, validation loss on its
``valid`` rows (held-out voices), a time budget, and WER/CER on the validation rows at the end.

Features are computed once (the model's own featuriser) and kept in memory; SpecAugment draws new
masks every batch. Batches: each epoch shuffles the utterances (seeded by ``(seed, epoch)``), sorts
them by length within windows of 20 batches and shuffles the batches.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from rnnkit.apps.speech.options import SpeechConfig
from rnnkit.apps.speech.vocab import ALPHABET
from rnnkit.errors import UserError
from rnnkit.training.config import TrainConfig
from rnnkit.training.task import SequenceTask
from rnnkit.training.time_budget import TimeBudget

Item = tuple[Tensor, list[int]]  # (T, n_mels) raw log-mel, token ids


def collate(items: list[Item]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(feats (B, T, F), lengths, targets (sum,), target_lengths)``."""
    lengths = torch.tensor([f.shape[0] for f, _ in items])
    feats = torch.nn.utils.rnn.pad_sequence([f for f, _ in items], batch_first=True)
    targets = torch.tensor([t for _, ts in items for t in ts], dtype=torch.long)
    return feats, lengths, targets, torch.tensor([len(ts) for _, ts in items])


class Buckets(Dataset):
    """One item per batch; ``epoch`` is set by the task before each epoch."""

    def __init__(self, items: list[Item], batch_size: int, seed: int, shuffle: bool, rank: int = 0,
                 world: int = 1) -> None:
        self.items, self.batch_size, self.seed, self.shuffle = items, batch_size, seed, shuffle
        self.rank, self.world, self.epoch = rank, world, 0

    def batches(self) -> list[list[int]]:
        idx = list(range(len(self.items)))
        if not self.shuffle:
            idx.sort(key=lambda i: self.items[i][0].shape[0])
            return [idx[s:s + self.batch_size] for s in range(0, len(idx), self.batch_size)]
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        rng.shuffle(idx)
        window, out = 20 * self.batch_size, []
        for w in range(0, len(idx), window):
            part = sorted(idx[w:w + window], key=lambda i: self.items[i][0].shape[0])
            out += [part[s:s + self.batch_size] for s in range(0, len(part), self.batch_size)]
        out = [b for b in out if len(b) == self.batch_size] or out[:1]
        rng.shuffle(out)
        return out

    def __len__(self) -> int:
        return len(self.batches()) if self.shuffle else -(-len(self.items) // self.batch_size)

    def __getitem__(self, j: int):
        if j == 0 or not hasattr(self, "_cache") or self._cache[0] != self.epoch:
            self._cache = (self.epoch, self.batches())
        return collate([self.items[i] for i in self._cache[1][j][self.rank::self.world]])


class SpeechTask(TimeBudget, SequenceTask):
    time_dim = 1

    def __init__(self, model, train_config: TrainConfig, opts: SpeechConfig, train: list[Item],
                 valid: list[Item]) -> None:
        super().__init__(model, train_config)
        self.opts, self.train_items, self.valid_items = opts, train, valid
        self._train_ds: Buckets | None = None
        # SpecAugment's own generator, reseeded from (seed, epoch, rank) every epoch: its masks do not
        # depend on what else drew from torch's global generator, so a resumed run draws the same masks
        self._augment_rng = torch.Generator()

    def budget_minutes(self) -> float | None:
        return self.opts.minutes

    def compute_loss(self, batch, state: Any) -> tuple[Tensor, Any]:
        from rnnkit.apps.speech.features import spec_augment

        feats, lengths, targets, target_lengths = batch
        o = self.opts
        if self.training and o.spec_augment:
            feats = spec_augment(feats, lengths, o.freq_masks, o.freq_width, o.time_masks, o.time_fraction,
                                 generator=self._augment_rng, fill=self.model.feat_mean)
        log_probs, out_lengths = self.model(feats, lengths)
        loss = F.ctc_loss(log_probs.transpose(0, 1), targets, out_lengths, target_lengths, blank=0,
                          reduction="mean", zero_infinity=True)
        return loss, None

    def train_dataloader(self):
        rank, world = self.world
        self._train_ds = Buckets(self.train_items, self.cfg.batch_size, self.cfg.seed, True, rank, world)
        return DataLoader(self._train_ds, batch_size=None, shuffle=False)

    def val_dataloader(self):
        rank, world = self.world
        return DataLoader(Buckets(self.valid_items, self.cfg.batch_size, 0, False, rank, world), batch_size=None,
                          shuffle=False)

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._augment_rng.manual_seed(self.epoch_seed())
        if self._train_ds is not None:
            self._train_ds.epoch = self.current_epoch


def build(opts: SpeechConfig):
    """The model ``opts`` describes (weights freshly initialised)."""
    from rnnkit.apps.speech.model import RecurrentCTC

    rnn = RecurrentCTC(opts.cell, opts.hidden, opts.layers, opts.mode == "offline", opts.channels, opts.n_mels,
                       norm=opts.norm, dropout=opts.dropout)
    if opts.arch == "rnn":
        return rnn
    from rnnkit.apps.speech.transformer import TransformerCTC, matched_width, param_count

    d, ff = matched_width(param_count(rnn), opts.heads, opts.transformer_layers, opts.channels, opts.n_mels)
    return TransformerCTC(d, opts.heads, ff, opts.transformer_layers, opts.channels, opts.n_mels, norm=opts.norm,
                          dropout=opts.dropout)


def featurize(model, waves) -> list[Tensor]:
    with torch.no_grad():
        return [model.featurizer(torch.from_numpy(w)) for w in waves]


@torch.no_grad()
def transcribe_waves(model, waves, beam: int = 1, batch_size: int = 32, lexicon=None) -> list[str]:
    """Hypotheses for sample arrays, in order (batched by length; beam search per utterance, constrained
    to ``lexicon``'s words when given)."""
    from rnnkit.apps.speech.ctc_decode import decode
    from rnnkit.apps.speech.vocab import decode as to_text

    model.eval()
    feats = featurize(model, waves)
    order = sorted(range(len(feats)), key=lambda i: feats[i].shape[0])
    out: list[str] = [""] * len(feats)
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        lengths = torch.tensor([feats[i].shape[0] for i in idx])
        x = torch.nn.utils.rnn.pad_sequence([feats[i] for i in idx], batch_first=True)
        log_probs, out_lengths = model(x, lengths)
        for j, i in enumerate(idx):
            out[i] = to_text(decode(log_probs[j, : int(out_lengths[j])], beam, lexicon), model.alphabet)
    return out


def data_digests(csv_path: Path, waves) -> dict[str, str]:
    """SHA-256 of the transcript CSV and of the audio read for it (train then valid samples): a resume
    must continue on the data the run was trained on."""
    import hashlib

    audio = hashlib.sha256()
    for w in waves:
        audio.update(w.astype("<f4").tobytes())
    return {"csv": hashlib.sha256(Path(csv_path).read_bytes()).hexdigest(), "audio": audio.hexdigest()}


def _same_data(run_dir: Path, saved: dict[str, Any], digests: dict[str, str], csv_path: Path) -> None:
    """A resume names the CSV again (paths are never read back from config.json): it and its audio must be
    the ones the run was trained on, compared by content (config.json's ``stats.sha256``)."""
    stats = saved.get("stats")
    recorded = stats.get("sha256") if isinstance(stats, dict) else None
    if not isinstance(recorded, dict):
        return  # a run written before the digests were recorded: nothing to compare with
    for which, what in (("csv", "transcript CSV"), ("audio", "audio")):
        if recorded.get(which) != digests[which]:
            raise UserError(f"{csv_path}: the {what} differs from the one {run_dir} was trained on (config.json's "
                            f"stats.sha256.{which}): resume with the run's own data, or start a new run with --out "
                            "(--init-from copies the weights)")


def run_speech(cfg: TrainConfig, opts: SpeechConfig, run_dir: Path, csv_path: Path,
               init_from: Path | None = None, resume: bool = False) -> dict[str, Any]:
    """Train into ``run_dir`` on the CSV's train rows; score its valid rows. ``init_from``: start from
    another speech run's weights (and feature statistics). ``resume``: continue the run in ``run_dir``
    (its checkpoint; the same CSV and audio, checked by SHA-256)."""
    from rnnkit.apps.speech.dataset import load_audio, read_transcripts
    from rnnkit.apps.speech.metrics import error_rates
    from rnnkit.apps.speech.transformer import param_count
    from rnnkit.apps.speech.vocab import encode
    from rnnkit.io.atomic import write_json_atomic
    from rnnkit.io.size_limits import check_size
    from rnnkit.training.config import as_dict
    from rnnkit.training.runner import fit, is_main_process, refuse_existing_run, seed_everything

    run_dir = Path(run_dir)
    opts.validate()
    check_size(opts.hidden, opts.layers, input_size=opts.hidden, batch=cfg.batch_size)
    if not resume:
        refuse_existing_run(run_dir)
    if init_from is not None:
        from rnnkit.validation.run_config import read_run_config

        read_run_config(init_from, "speech")  # a speech run; fit checks the tensors' names and shapes
    rows = read_transcripts(csv_path, ("path", "text", "split"), ALPHABET)
    train_rows = [r for r in rows if r.split == "train"]
    valid_rows = [r for r in rows if r.split == "valid"]
    if not train_rows or not valid_rows:
        raise UserError(f"{csv_path} has {len(train_rows)} train and {len(valid_rows)} valid rows (column split): "
                        "give at least one of each")
    seed_everything(cfg.seed, cfg.threads)
    model = build(opts)
    t0 = time.perf_counter()
    train_waves = load_audio(train_rows, model.sample_rate)
    valid_waves = load_audio(valid_rows, model.sample_rate)
    digests = data_digests(csv_path, train_waves + valid_waves)
    if resume and (run_dir / "config.json").exists():  # read and check only: nothing is written before fit
        from rnnkit.validation.run_config import read_run_config

        _same_data(run_dir, read_run_config(run_dir, "speech"), digests, csv_path)
    train_feats, valid_feats = featurize(model, train_waves), featurize(model, valid_waves)
    frames = torch.cat(train_feats)
    model.set_statistics(frames.mean(0), frames.std(0))
    train = [(f, encode(r.text, model.alphabet)) for f, r in zip(train_feats, train_rows, strict=True)]
    valid = [(f, encode(r.text, model.alphabet)) for f, r in zip(valid_feats, valid_rows, strict=True)]
    if len(train) < cfg.batch_size:
        raise UserError(f"{len(train)} training utterances are fewer than one batch of {cfg.batch_size}: "
                        "lower --batch-size")
    hours = sum(w.size for w in train_waves) / model.sample_rate / 3600
    stats = {"parameters": param_count(model), "utterances": {"train": len(train), "valid": len(valid)},
             "train_hours": round(hours, 3), "train_voices": len({r.voice for r in train_rows}),
             "valid_voices": len({r.voice for r in valid_rows}), "features_seconds": round(time.perf_counter() - t0, 1),
             "file": str(csv_path), "sha256": digests}
    if not cfg.quiet:
        print(f"{len(train):,}/{len(valid):,} train/valid utterances ({hours:.2f} h of training audio, "
              f"{stats['train_voices']}/{stats['valid_voices']} voices); {opts.mode} {opts.arch} "
              f"({opts.cell if opts.arch == 'rnn' else 'transformer'}), {param_count(model):,} parameters")
    task = SpeechTask(model, cfg, opts, train, valid)
    metrics = fit(task, run_dir, {"app": "speech", "task": as_dict(opts), "stats": stats}, resume=resume,
                  init_from=init_from)
    if not is_main_process():
        return metrics  # DDP: the main process scores the trained model and writes the run's files
    threads = torch.get_num_threads()
    t1 = time.perf_counter()
    try:
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        hyps = transcribe_waves(model, valid_waves, opts.beam)
    finally:
        torch.set_num_threads(threads)
    scores = {**error_rates([r.text for r in valid_rows], hyps), "beam": opts.beam,
              "decode_seconds": round(time.perf_counter() - t1, 2)}
    metrics = {**metrics, "speech": {"stopped_by_time": task.stopped_by_time, "valid": scores, **stats}}
    write_json_atomic(run_dir / "metrics.json", metrics)
    return metrics
