"""Train, evaluate and predict: what the CLI commands (and the tests, and the demo) call.

Splits. ``train`` reads the training cases (the ``train`` split of a long CSV, or every case of a
file without a split column such as a ``_TRAIN.ts``), carves a stratified validation split from them
(``val_fraction``; 0: none, the training cases themselves judge the epochs; ``folds`` >= 2:
cross-fitting), fits the per-dimension normalisation on the rest, trains with early stopping on
the validation loss and keeps the weights of the best validation epoch; the validation report puts
the baseline (``baseline``: 1-NN DTW or MiniRocket + ridge, fitted on the same training cases)
beside the network. ``evaluate`` scores the ``test`` split (or every case of a file without a split
column) and is the only command that reads it; its baseline uses every training case (the archive's
protocol), saved in ``baseline.safetensors`` at training time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rnnkit.errors import UserError

from .cases import Cases, class_order, encode_labels, pad
from .data import check_dims, read_cases
from .metrics import scores

BASELINE_FILE = "baseline.safetensors"
CLASS_WEIGHTS = ("none", "balanced")
BASELINES = ("dtw", "minirocket", "none")
AUTO_FOLDS = 5  # folds=0 (auto): a 5-fold cross-fitted ensemble ...
CROSS_FIT_BELOW = 1000  # ... when there are fewer training cases than this (else one model)


@dataclass
class ClassifyConfig:
    """Task options (data, model, evaluation); training options are :class:`TrainConfig`'s."""

    data: str = ""
    missing: str = "interpolate"  # interpolate | error
    arch: str = "lstm_fcn"  # rnn | lstm_fcn | mlstm_fcn | conv_rnn | transformer
    cell: str = "lstm"
    hidden: int = 64
    num_layers: int = 1
    bidirectional: bool = False
    pooling: str = "last"  # last | mean | max | attention
    dropout: float = 0.2
    filters: str = "128,256,128"  # the FCN block's filters per convolution
    kernels: str = "8,5,3"
    backend: str = "auto"
    transformer_width: int = 0  # 0: matched to the recurrent model of the same cell/hidden/layers
    val_fraction: float = 0.2
    class_weights: str = "none"  # none | balanced
    baseline: str = "dtw"  # dtw | minirocket | none
    baseline_window: float = 0.1  # Sakoe-Chiba band, a fraction of the longer series' length
    ensemble: int = 1  # > 1: that many members (seeds seed..seed+N-1), their probabilities averaged
    # cross-fitting: K members, member k validated on fold k of the training cases and trained on the
    # others, probabilities averaged; 0 = auto (AUTO_FOLDS under CROSS_FIT_BELOW training cases, else 1),
    # 1 = one model (or --set ensemble=N) and a held-out validation split (val_fraction; 0: none, the best
    # epoch and early stopping then watch the training cases themselves)
    folds: int = 1
    crop: float = 1.0  # < 1: window slicing, each training case seen through a random window of this share

    def validate(self) -> ClassifyConfig:
        from .model import ARCHS
        from .pooling import POOLINGS

        for name, value, choices in (("arch", self.arch, ARCHS), ("pooling", self.pooling, POOLINGS),
                                     ("class_weights", self.class_weights, CLASS_WEIGHTS),
                                     ("baseline", self.baseline, BASELINES),
                                     ("missing", self.missing, ("interpolate", "error"))):
            if value not in choices:
                raise UserError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")
        for name in ("hidden", "num_layers"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 1 <= self.ensemble <= 64:
            raise UserError(f"ensemble must lie in [1, 64] members, got {self.ensemble}")
        if not 0 <= self.folds <= 64:
            raise UserError(f"folds must lie in [0, 64] (0: auto, 1: a held-out validation split), got {self.folds}")
        if self.folds >= 2 and self.ensemble > 1:
            raise UserError(f"folds={self.folds} trains a cross-fitted ensemble of {self.folds} members already; "
                            "give folds or ensemble, not both")
        if self.transformer_width < 0:
            raise UserError(f"transformer_width must be 0 (matched) or positive, got {self.transformer_width}")
        if not 0 <= self.val_fraction < 1:
            raise UserError(f"val_fraction must lie in [0, 1) (0: no held-out split), got {self.val_fraction}")
        if self.val_fraction == 0 and self.folds != 1:
            raise UserError(f"val_fraction 0 (no held-out split) trains one model or a seed ensemble (folds=1); "
                            f"folds={self.folds} cross-fits instead: give one of them")
        if not 0 <= self.baseline_window <= 1:
            raise UserError(f"baseline_window must lie in [0, 1], got {self.baseline_window}")
        if not 0 < self.crop <= 1:
            raise UserError(f"crop must lie in (0, 1] (a share of a case's steps), got {self.crop}")
        if not 0 <= self.dropout < 1:
            raise UserError(f"dropout must lie in [0, 1), got {self.dropout}")
        self.filter_list()
        self.kernel_list()
        from rnnkit.cells.registry import cell_names

        if self.arch != "transformer" and self.cell not in cell_names():
            raise UserError(f"unknown cell {self.cell!r}; choose one of: {', '.join(cell_names())}")
        return self

    def filter_list(self) -> list[int]:
        return _ints(self.filters, "filters")

    def kernel_list(self) -> list[int]:
        return _ints(self.kernels, "kernels")


def resolved_folds(cfg: ClassifyConfig, n_cases: int) -> int:
    """The folds a run trains with: ``cfg.folds``, or for auto (0) :data:`AUTO_FOLDS` under
    :data:`CROSS_FIT_BELOW` training cases (at most one fold per case), else 1; 1 also when a seed
    ensemble (``ensemble > 1``) is asked for."""
    if cfg.folds:
        return cfg.folds
    if cfg.ensemble > 1 or n_cases >= CROSS_FIT_BELOW:
        return 1
    return min(AUTO_FOLDS, n_cases)


def _ints(text: str, name: str) -> list[int]:
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{name} must be integers separated by commas, got {text!r}") from None
    if not values or min(values) < 1:
        raise UserError(f"{name} must be positive integers separated by commas, got {text!r}")
    return values


# ---- data ----------------------------------------------------------------------------------------
def training_cases(cfg: ClassifyConfig, path: str | Path | None = None) -> tuple[Cases, list[str]]:
    """(the training cases of ``path``, default ``cfg.data``; the classes in their saved order); a label
    only in the file's test split is an error now, before anything is written."""
    source = path if path is not None else cfg.data
    cases = read_cases(source, cfg.missing)
    train = cases.split("train")
    labels = train.require_labels()
    classes = class_order(labels)
    if len(classes) < 2:
        raise UserError(f"{source}: the training cases have a single class ({classes[0]!r}); "
                        "a classifier needs at least two")
    if cases.splits is not None and "test" in cases.splits and cases.labels is not None:
        encode_labels(cases.split("test").require_labels(), classes, f"{source} (test split)")
    return train, classes


def normalisation(cases: Cases) -> tuple[list[float], list[float]]:
    """Per-dimension mean and standard deviation over every step of ``cases`` (1 for a constant one)."""
    flat = np.concatenate(cases.values).astype(np.float64)
    mean, std = flat.mean(0), flat.std(0)
    std = np.where(std > 1e-8, std, 1.0)
    return [float(v) for v in mean], [float(v) for v in std]


# ---- model ---------------------------------------------------------------------------------------
def model_kwargs(cfg: ClassifyConfig, n_dims: int, classes: list[str]) -> dict[str, Any]:
    return dict(n_dims=n_dims, classes=classes, arch=cfg.arch, cell=cfg.cell, hidden=cfg.hidden,
                num_layers=cfg.num_layers, bidirectional=cfg.bidirectional, pooling=cfg.pooling,
                dropout=cfg.dropout, filters=cfg.filter_list(), kernels=cfg.kernel_list(), backend=cfg.backend)


def build_model(cfg: ClassifyConfig, n_dims: int, classes: list[str], mean: list[float], std: list[float],
                seed: int = 0):
    """The classifier of ``cfg`` (``cfg.ensemble > 1``: an ensemble whose member k starts from seed
    ``seed + k``)."""
    from .ensemble import ClassifierEnsemble
    from .model import Classifier, count_parameters, matched_transformer_width

    kw = model_kwargs(cfg, n_dims, classes)
    if cfg.arch == "transformer":
        width = cfg.transformer_width
        if not width:  # as many parameters as the recurrent model of this cell, width and depth
            rnn = Classifier(**{**kw, "arch": "rnn"})
            width = matched_transformer_width(count_parameters(rnn), n_dims, len(classes), cfg.num_layers,
                                              cfg.dropout)
        kw.update(hidden=width, bidirectional=False)
    if cfg.ensemble > 1:
        return ClassifierEnsemble(cfg.ensemble, seed, **kw, mean=mean, std=std)
    return Classifier(**kw, mean=mean, std=std)


def model_label(cfg: dict[str, Any]) -> str:
    if cfg.get("members"):
        return f"{model_label({k: v for k, v in cfg.items() if k != 'members'})} x{cfg['members']}"
    arch = cfg.get("arch")
    if arch == "transformer":
        return "transformer"
    cell = ("bi" if cfg.get("bidirectional") else "") + str(cfg.get("cell"))
    return f"{arch}-{cell}" if arch != "rnn" else f"{cell}-{cfg.get('pooling')}"


# ---- training ------------------------------------------------------------------------------------
def file_digest(path: str | Path) -> str:
    """SHA-256 of a data file: ``--resume`` checks that it continues on the file the run was trained on."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_resumed_data(run_dir: Path, digest: str, path: str | Path) -> None:
    from rnnkit.io.saving import read_app_config

    info = read_app_config(run_dir, "classify").get("data_info")
    recorded = info.get("data_sha256") if isinstance(info, dict) else None
    if recorded != digest:
        raise UserError(f"{path} is not the file {run_dir} was trained on (its SHA-256 differs from config.json's "
                        "data_info.data_sha256): resume with the run's own training file")


def train_classifier(tcfg, cfg: ClassifyConfig, run_dir: Path, command: str | None = None, *, resume: bool = False,
                     data_path: str | Path | None = None) -> dict[str, Any]:
    """Train into ``run_dir`` (``resume``: continue its checkpoint) on ``data_path`` (default
    ``cfg.data``); returns the validation report (model and baseline)."""
    import dataclasses

    from rnnkit.io.size_limits import check_size
    from rnnkit.training.config import as_dict
    from rnnkit.training.runner import fit, is_main_process, seed_everything

    from .split import stratified_folds, stratified_split
    from .task import ClassifyTask, as_dataset, balanced_weights

    path = data_path if data_path is not None else cfg.data
    train, classes = training_cases(cfg, path)
    digest = file_digest(path)
    if resume:
        _check_resumed_data(run_dir, digest, path)
    y = encode_labels(train.require_labels(), classes, str(path))
    folds = resolved_folds(cfg, len(train))
    fold = None
    if folds >= 2:  # every training case fits K-1 members and validates the one that never saw it
        fold = stratified_folds(y, folds, tcfg.seed)
        tr = va = np.arange(len(train))
    elif cfg.val_fraction == 0:  # no held-out split: every case trains, and the best epoch is judged on them all
        tr = va = np.arange(len(train))
    else:
        tr, va = stratified_split(y, cfg.val_fraction, tcfg.seed)
    fit_cases, val_cases = train.select(tr), train.select(va)
    check_size(cfg.hidden, cfg.num_layers, input_size=train.n_dims, seq_len=int(train.lengths().max()),
               batch=tcfg.batch_size)
    # few cases: smaller batches, so that an epoch is several steps (the last partial batch is dropped)
    batch = max(1, min(tcfg.batch_size, len(tr) // 4 or 1))
    tcfg = dataclasses.replace(tcfg, batch_size=batch)
    mean, std = normalisation(fit_cases)
    seed_everything(tcfg.seed)
    model = build_model(dataclasses.replace(cfg, ensemble=folds) if fold is not None else cfg, train.n_dims, classes,
                        mean, std, seed=tcfg.seed)
    max_len = int(train.lengths().max())
    x_tr, l_tr = pad(fit_cases, max_len)
    x_va, l_va = pad(val_cases, max_len)
    weights = balanced_weights(y[tr], len(classes)) if cfg.class_weights == "balanced" else None
    task = ClassifyTask(model, tcfg, as_dataset(x_tr, l_tr, y[tr], fold), as_dataset(x_va, l_va, y[va], fold), weights,
                        crop=cfg.crop)
    info = {"classes": classes, "n_dims": train.n_dims, "dim_names": train.dim_names,
            "train_cases": len(tr), "val_cases": len(va), "val_case_ids": val_cases.ids, "folds": folds,
            "max_length": max_len, "min_length": int(train.lengths().min()), "data_sha256": digest}
    if fold is not None:
        info["case_folds"] = [int(f) for f in fold]  # in the order of val_case_ids (every training case)
    metrics = fit(task, run_dir, {"app": "classify", "task": as_dict(cfg), "data_info": info}, resume=resume)
    if not is_main_process():
        return {}  # DDP: the main process scores the trained model and writes the run's files
    if task.best_state is not None:  # the weights of the best validation epoch, not the last one
        model.load_state_dict(task.best_state)
        _write_weights(model, run_dir)
    model.eval()
    if cfg.baseline != "none":
        _write_baseline_refs(run_dir, train, y)
    from .model import count_parameters

    if fold is not None:
        report = score_out_of_fold(model, val_cases, y[va], fold, classes, cfg)
    elif cfg.val_fraction == 0:  # the training cases scored by the model that learnt them: no baseline beside
        report = score_cases(model, val_cases, y[va], classes, "validation", cfg, refs=None,
                             suffix=" on its training cases")
    else:
        report = score_cases(model, val_cases, y[va], classes, "validation", cfg,
                             refs=(fit_cases, y[tr]) if cfg.baseline != "none" else None)
    report["training"] = {"status": metrics["status"], "epochs": metrics["epochs_completed"],
                          "best_epoch": task.best["epoch"], "seconds": metrics["train_seconds"],
                          "batch_size": batch, "parameters": count_parameters(model), "seed": tcfg.seed,
                          "folds": folds}
    write_report(run_dir, report, model, val_cases, y[va], command)
    return report


def _write_weights(model, run_dir: Path) -> None:
    import rnnkit
    from rnnkit.io.atomic import write_bytes_atomic
    from rnnkit.io.confine import inside_run_dir
    from rnnkit.io.saving import WEIGHTS_FILE, weights_bytes

    write_bytes_atomic(inside_run_dir(run_dir, WEIGHTS_FILE),
                       weights_bytes(model, {"rnnkit_version": rnnkit.__version__}))


def _write_baseline_refs(run_dir: Path, train: Cases, y: np.ndarray) -> None:
    """Every training case (raw values), for the baseline at ``evaluate``: safetensors, no pickle."""
    import torch
    from safetensors.torch import save

    from rnnkit.io.atomic import write_bytes_atomic
    from rnnkit.io.confine import inside_run_dir

    x, lengths = pad(train)
    data = save({"values": torch.from_numpy(x), "lengths": torch.from_numpy(lengths), "labels": torch.from_numpy(y)})
    write_bytes_atomic(inside_run_dir(run_dir, BASELINE_FILE), data)


def read_baseline_refs(run_dir: Path, n_dims: int, n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, lengths, labels) of ``baseline.safetensors``, each checked (the file is untrusted)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    from rnnkit.io.confine import inside_run_dir

    path = inside_run_dir(run_dir, BASELINE_FILE)
    if not path.is_file():
        raise UserError(f"{run_dir}: no {BASELINE_FILE} (the run was trained with --set baseline=none); "
                        "evaluate with --no-baseline")
    try:
        t = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable safetensors file ({type(exc).__name__})") from None
    x, lengths, labels = t.get("values"), t.get("lengths"), t.get("labels")
    if (x is None or lengths is None or labels is None or set(t) != {"values", "lengths", "labels"}
            or x.ndim != 3 or x.shape[2] != n_dims or x.dtype != np.float32 or lengths.shape != (x.shape[0],)
            or labels.shape != (x.shape[0],) or lengths.dtype != np.int64 or labels.dtype != np.int64
            or not len(x) or lengths.min() < 1 or lengths.max() > x.shape[1]
            or labels.min() < 0 or labels.max() >= n_classes or not np.isfinite(x).all()):
        raise UserError(f"{path}: not the baseline references of this run (names, shapes or values)")
    return x, lengths, labels


# ---- scoring -------------------------------------------------------------------------------------
def predict_proba(model, cases: Cases, batch: int = 256) -> np.ndarray:
    """(N, classes) probabilities; cases go in batches padded to the batch's longest case."""
    import torch

    order = np.argsort(cases.lengths(), kind="stable")  # similar lengths together: little padding
    out = np.zeros((len(cases), len(model.classes)), dtype=np.float64)
    model.eval()
    with torch.no_grad():
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            x, lengths = pad(cases.select(idx))
            logits = model(torch.from_numpy(x), torch.from_numpy(lengths))
            out[idx] = torch.softmax(logits.double(), -1).numpy()
    return out


def baseline_predictions(cases: Cases, refs: tuple[np.ndarray, np.ndarray, np.ndarray], mean: np.ndarray,
                         std: np.ndarray, cfg: ClassifyConfig, n_classes: int) -> np.ndarray:
    """The baseline's class indices of ``cases`` given the references (values, lengths, labels), both
    normalised with the model's per-dimension statistics: 1-NN DTW, or MiniRocket + ridge fitted on them."""
    import torch

    x, lengths = pad(cases)
    rx, rl, ry = refs
    queries = (x - mean) / std * (np.arange(x.shape[1])[None, :] < lengths[:, None])[..., None]
    references = (rx - mean) / std * (np.arange(rx.shape[1])[None, :] < rl[:, None])[..., None]
    if cfg.baseline == "minirocket":
        from .minirocket import minirocket_predictions

        return minirocket_predictions(references.astype(np.float32), rl, ry, n_classes, queries.astype(np.float32),
                                      lengths)
    from .dtw import dtw_distances, nearest_neighbour

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many small operations: extra threads only wait at barriers
    try:
        d = dtw_distances(queries, lengths, references, rl, cfg.baseline_window)
    finally:
        torch.set_num_threads(threads)
    return nearest_neighbour(d, ry)


def baseline_label(cfg: ClassifyConfig) -> str:
    if cfg.baseline == "minirocket":
        return "minirocket+ridge"
    return f"1nn-dtw (window {cfg.baseline_window:g})"


def score_cases(model, cases: Cases, y: np.ndarray, classes: list[str], name: str, cfg: ClassifyConfig,
                refs: tuple[Cases, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray] | None,
                suffix: str = "") -> dict[str, Any]:
    """The report of ``name`` (validation / evaluation): the model's scores (its row named with
    ``suffix`` after the model), the baseline's beside them, the probabilities and predictions (kept
    under ``_rows`` for the CSV, not written to the JSON)."""
    import time

    label = model_label(model.get_config()) + suffix
    t0 = time.perf_counter()
    proba = predict_proba(model, cases)
    pred = proba.argmax(1)
    table = {label: {**scores(y, pred, classes), "seconds": round(time.perf_counter() - t0, 3)}}
    base_pred = None
    if refs is not None:
        if isinstance(refs[0], Cases):
            ref_cases, ref_y = refs
            rx, rl = pad(ref_cases)
            refs = (rx, rl, ref_y)
        t0 = time.perf_counter()
        mean, std = model.mean.numpy(), model.std.numpy()
        base_pred = baseline_predictions(cases, refs, mean, std, cfg, len(classes))
        base = baseline_label(cfg)
        table[base] = {**scores(y, base_pred, classes), "seconds": round(time.perf_counter() - t0, 3)}
    return {"split": name, "cases": len(cases), "classes": classes, "metrics": table,
            "_rows": {"proba": proba, "pred": pred, "baseline": base_pred}}


def score_out_of_fold(model, cases: Cases, y: np.ndarray, fold: np.ndarray, classes: list[str],
                      cfg: ClassifyConfig) -> dict[str, Any]:
    """The validation report of a cross-fitted ensemble: every training case scored by the one member
    that never trained on it (out-of-fold), and the baseline the same way (fitted for fold k's cases on
    the other folds' cases)."""
    import time

    label = model_label(model.get_config())
    t0 = time.perf_counter()
    proba = np.zeros((len(cases), len(classes)), dtype=np.float64)
    for k, net in enumerate(model.nets):
        idx = np.flatnonzero(fold == k)
        if len(idx):
            proba[idx] = predict_proba(net, cases.select(idx))
    pred = proba.argmax(1)
    table = {f"{label} out-of-fold": {**scores(y, pred, classes), "seconds": round(time.perf_counter() - t0, 3)}}
    base_pred = None
    if cfg.baseline != "none":
        t0 = time.perf_counter()
        base_pred = np.zeros(len(cases), dtype=np.int64)
        mean, std = model.mean.numpy(), model.std.numpy()
        for k in range(len(model.nets)):
            idx, ref = np.flatnonzero(fold == k), np.flatnonzero(fold != k)
            if len(idx):
                rx, rl = pad(cases.select(ref))
                base_pred[idx] = baseline_predictions(cases.select(idx), (rx, rl, y[ref]), mean, std, cfg,
                                                      len(classes))
        base = f"{baseline_label(cfg)} out-of-fold"
        table[base] = {**scores(y, base_pred, classes), "seconds": round(time.perf_counter() - t0, 3)}
    return {"split": "validation", "cases": len(cases), "classes": classes, "metrics": table,
            "folds": len(model.nets), "_rows": {"proba": proba, "pred": pred, "baseline": base_pred}}


def write_report(run_dir: Path, report: dict[str, Any], model, cases: Cases, y: np.ndarray | None,
                 command: str | None) -> None:
    """``<split>.json``, ``<split>.md``, ``<split>_confusion.png`` and ``<split>_predictions.csv``."""
    from rnnkit.io.atomic import write_json_atomic, write_text_atomic
    from rnnkit.io.confine import inside_run_dir

    from .plots import plot_confusion

    name, classes = report["split"], report["classes"]
    rows = report.pop("_rows")
    label = next(iter(report["metrics"]))
    if command:
        report["command"] = command
    write_json_atomic(inside_run_dir(run_dir, f"{name}.json"), report)
    write_text_atomic(inside_run_dir(run_dir, f"{name}.md"), markdown_report(report))
    cm = np.array(report["metrics"][label]["confusion"])
    m = report["metrics"][label]
    plot_confusion(inside_run_dir(run_dir, f"{name}_confusion.png"), cm, classes,
                   f"{label}, {name}: accuracy {m['accuracy']:.3f} ({m['cases']} cases)")
    csv = predictions_csv(cases, classes, rows["proba"], y, rows["baseline"])
    write_text_atomic(inside_run_dir(run_dir, f"{name}_predictions.csv"), csv)


def predictions_csv(cases: Cases, classes: list[str], proba: np.ndarray, y: np.ndarray | None,
                    baseline: np.ndarray | None = None) -> str:
    """case_id[, split][, label], predicted[, correct][, baseline], p_<class>... as CSV text."""
    import pandas as pd

    pred = proba.argmax(1)
    frame: dict[str, Any] = {"case_id": cases.ids}
    if cases.splits is not None:
        frame["split"] = cases.splits
    if y is not None:
        frame["label"] = [classes[i] for i in y]
    frame["predicted"] = [classes[i] for i in pred]
    if y is not None:
        frame["correct"] = (pred == y).astype(int)
    if baseline is not None:
        frame["baseline"] = [classes[i] for i in baseline]
    for k, c in enumerate(classes):
        frame[f"p_{c}"] = np.round(proba[:, k], 6)
    return pd.DataFrame(frame).to_csv(index=False)


COLUMNS = ("accuracy", "balanced_accuracy", "macro_f1")


def markdown_report(report: dict[str, Any]) -> str:
    lines = [f"# classify {report['split']}", "", f"{report['cases']} cases, {len(report['classes'])} classes"
             + (f"; command: `{report['command']}`" if report.get("command") else ""), "",
             "| model | " + " | ".join(COLUMNS) + " | seconds |", "|---|" + "---:|" * (len(COLUMNS) + 1)]
    for name, row in report["metrics"].items():
        lines.append(f"| {name} | " + " | ".join(_fmt(row.get(c)) for c in COLUMNS) + f" | {row['seconds']:.1f} |")
    label = next(iter(report["metrics"]))
    lines += ["", f"Per class ({label}):", "", "| class | precision | recall | f1 | support |",
              "|---|---:|---:|---:|---:|"]
    for c, r in report["metrics"][label]["per_class"].items():
        lines.append(f"| {c} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {r['support']} |")
    return "\n".join(lines) + "\n"


def _fmt(v: Any) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.3f}"


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{report['split']}: {report['cases']} cases, {len(report['classes'])} classes")
    t.add_column("model")
    for c in COLUMNS:
        t.add_column(c, justify="right")
    t.add_column("seconds", justify="right")
    for name, row in report["metrics"].items():
        t.add_row(name, *(_fmt(row.get(c)) for c in COLUMNS), f"{row['seconds']:.1f}")
    Console(width=max(100, Console().width)).print(t)


# ---- evaluate / predict on a trained run -----------------------------------------------------------
def evaluate_run(model, cfg: ClassifyConfig, run_dir: Path, data: Path, baseline: bool,
                 command: str | None = None) -> dict[str, Any]:
    cases = read_cases(data, cfg.missing).split("test")
    check_dims(cases, int(model.mean.numel()))
    classes = list(model.classes)
    y = encode_labels(cases.require_labels(), classes, str(data))
    refs = read_baseline_refs(run_dir, int(model.mean.numel()), len(classes)) if baseline else None
    report = score_cases(model, cases, y, classes, "evaluation", cfg, refs)
    write_report(run_dir, report, model, cases, y, command)
    return report


def predict_cases(model, cfg: ClassifyConfig, data: Path) -> tuple[Cases, str]:
    """Every case of ``data`` (whatever its split) and the predictions CSV text (labels, when the file
    has them, beside the predictions; an unknown label is then an error)."""
    cases = read_cases(data, cfg.missing)
    check_dims(cases, int(model.mean.numel()))
    classes = list(model.classes)
    y = encode_labels(cases.labels, classes, str(data)) if cases.labels is not None else None
    proba = predict_proba(model, cases)
    return cases, predictions_csv(cases, classes, proba, y)
