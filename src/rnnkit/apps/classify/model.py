"""The classifier: normalise, encode, pool, one linear head; every architecture shares the data path.

- ``arch="rnn"``: :class:`rnnkit.Recurrent` with any cell (``cell``: lstm, gru, mingru, ...), stacked
  and optionally bidirectional, then ``pooling`` (last / mean / max / attention).
- ``arch="lstm_fcn"`` / ``"mlstm_fcn"`` (Karim et al. 2018, 2019): the same recurrent branch beside the
  fully convolutional block (:mod:`.conv`; MLSTM-FCN with squeeze-and-excite), the recurrent branch
  pooled, the convolutional one averaged over the case's steps, both concatenated. Unlike the paper the
  recurrent branch reads the series in time order (no "dimension shuffle"), so it works for any length.
- ``arch="conv_rnn"``: a convolutional front end feeding a recurrent stack (the CNN+RNN hybrid): the
  same convolutional block (``filters``/``kernels``, "same" padding, masked), whose per-step features
  are the recurrent stack's input, then ``pooling``. The convolutions see local shape; the RNN reads
  their features in order.
- ``arch="transformer"``: a Transformer encoder (sinusoidal positions, 4 heads, feed-forward 2x width)
  as a baseline; ``hidden`` is its width (the pipeline matches its size to the recurrent model's).

Inputs are raw values ``x (B, T, D)`` zero-padded after each case's ``lengths``; the per-dimension mean
and standard deviation of the training cases are part of the model (buffers, saved with it), and the
class names are in its config, so ``rnnkit.load`` gives a model that maps raw values to named classes.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.errors import UserError
from rnnkit.io.registry import register_model
from rnnkit.layers.recurrent import Recurrent

from .conv import ConvBlock
from .pooling import Pooling, step_mask

ARCHS = ("rnn", "lstm_fcn", "mlstm_fcn", "conv_rnn", "transformer")
HEADS = 4
MAX_CLASSES = 100_000
MAX_FILTERS = 4096


@register_model("classify.net")
class Classifier(nn.Module):
    def __init__(self, n_dims: int, classes: list[str], arch: str = "rnn", cell: str = "lstm", hidden: int = 64,
                 num_layers: int = 1, bidirectional: bool = False, pooling: str = "last", dropout: float = 0.0,
                 filters: list[int] | None = None, kernels: list[int] | None = None, backend: str = "auto",
                 mean: list[float] | None = None, std: list[float] | None = None) -> None:
        cfg = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        super().__init__()
        if arch not in ARCHS:
            raise UserError(f"unknown arch {arch!r}; choose one of: {', '.join(ARCHS)}")
        if not 2 <= len(classes) <= MAX_CLASSES or len(set(classes)) != len(classes):
            raise UserError(f"a classifier needs 2 to {MAX_CLASSES} distinct classes, got {len(classes)}")
        if not 0 <= dropout < 1:
            raise UserError(f"dropout must lie in [0, 1), got {dropout}")
        filters = list(filters or [128, 256, 128])
        kernels = list(kernels or [8, 5, 3])
        if len(filters) != len(kernels) or not filters or not all(0 < v <= MAX_FILTERS for v in filters + kernels):
            raise UserError(f"filters and kernels: as many of each, 1 to {MAX_FILTERS}, got {filters} and {kernels}")
        cfg.update(filters=filters, kernels=kernels, classes=list(classes))
        self.cfg = cfg
        self.arch, self.classes = arch, list(classes)
        self.register_buffer("mean", torch.tensor(mean or [0.0] * n_dims, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std or [1.0] * n_dims, dtype=torch.float32))
        if self.mean.numel() != n_dims or self.std.numel() != n_dims:
            raise UserError(f"mean and std need {n_dims} values (one per dimension)")
        width = 0
        if arch == "transformer":
            if hidden % HEADS:
                raise UserError(f"the Transformer's width {hidden} must be divisible by its {HEADS} heads")
            self.inp = nn.Linear(n_dims, hidden)
            layer = nn.TransformerEncoderLayer(hidden, HEADS, 2 * hidden, dropout, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
            self.pool = Pooling(pooling, hidden)
            width = hidden
        else:
            from rnnkit.cells.registry import cell_names

            if cell not in cell_names():
                raise UserError(f"unknown cell {cell!r}; choose one of: {', '.join(cell_names())}")
            rnn_input = n_dims
            if arch == "conv_rnn":  # the front end: its features are the recurrent stack's input
                self.front = ConvBlock(n_dims, tuple(filters), tuple(kernels))
                rnn_input = self.front.out_channels
            self.rnn = Recurrent(cell, rnn_input, hidden, num_layers, batch_first=True, bidirectional=bidirectional,
                                 dropout=dropout if num_layers > 1 else 0.0, backend=backend)
            width = hidden * (2 if bidirectional else 1)
            self.pool = Pooling(pooling, width, bidirectional)
            if arch in ("lstm_fcn", "mlstm_fcn"):
                self.conv = ConvBlock(n_dims, tuple(filters), tuple(kernels), squeeze_excite=arch == "mlstm_fcn")
                width += self.conv.out_channels
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(width, len(classes))

    def get_config(self) -> dict[str, Any]:
        return dict(self.cfg)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """Logits ``(B, classes)`` of raw values ``x (B, T, D)`` with ``lengths (B,)`` steps each."""
        lengths = lengths.to(device=x.device, dtype=torch.int64)
        return self.logits(x, lengths, full=bool((lengths == x.shape[1]).all()))

    def logits(self, x: Tensor, lengths: Tensor, full: bool) -> Tensor:
        """:meth:`forward`, told whether every case fills the ``T`` steps (``full``: then the recurrent
        stack runs without lengths, on the fastest executors; an exported graph says so itself)."""
        T = x.shape[1]
        mask = step_mask(lengths, T)[..., None]
        z = ((x - self.mean) / self.std) * mask  # padding is zero after normalising too
        if self.arch == "transformer":
            h = self.inp(z) + _positions(T, self.inp.out_features, z.device, z.dtype)
            h = self.encoder(h, src_key_padding_mask=~mask[..., 0])
            return self.head(self.drop(self.pool(h, lengths)))
        if self.arch == "conv_rnn":
            z = self.front(z, lengths)  # padding steps stay zero
        out, _ = self.rnn(z, lengths=None if full else lengths)
        feats = self.pool(out, lengths)
        if self.arch in ("lstm_fcn", "mlstm_fcn"):
            conv = self.conv(z, lengths)
            feats = torch.cat([feats, conv.sum(1) / lengths[:, None].to(conv.dtype)], -1)
        return self.head(self.drop(feats))


def _positions(T: int, width: int, device, dtype) -> Tensor:
    """Sinusoidal positions (Vaswani et al. 2017): any length, also longer than in training."""
    pos = torch.arange(T, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, width, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / width))
    pe = torch.zeros(T, width, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe.to(dtype)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def matched_transformer_width(target: int, n_dims: int, n_classes: int, num_layers: int, dropout: float = 0.0) -> int:
    """The Transformer width (a multiple of its heads) whose parameter count is closest to ``target``."""
    best, best_gap = HEADS, math.inf
    for width in range(HEADS, 1025, HEADS):
        n = count_parameters(Classifier(n_dims, [str(i) for i in range(n_classes)], "transformer", hidden=width,
                                        num_layers=num_layers, pooling="mean", dropout=dropout))
        if abs(n - target) < best_gap:
            best, best_gap = width, abs(n - target)
        if n > target:
            break
    return best
