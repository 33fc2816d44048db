"""The fully convolutional block of LSTM-FCN and MLSTM-FCN (Karim et al. 2018, 2019).

Three temporal convolutions (128, 256, 128 filters, kernels 8, 5, 3, "same" padding), each followed by
batch norm and ReLU; MLSTM-FCN adds a squeeze-and-excite block after the first two (reduction 16).
Padding steps are zeroed after every layer, so a case's padding never leaks into its steps: at
evaluation (batch norm on running statistics) a prediction does not depend on the padding at all.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .pooling import step_mask


class SqueezeExcite(nn.Module):
    """Channel weights from the masked mean over time (Hu et al. 2018)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        inner = max(1, channels // reduction)
        self.gate = nn.Sequential(nn.Linear(channels, inner), nn.ReLU(), nn.Linear(inner, channels), nn.Sigmoid())

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:  # x (B, C, T), mask (B, 1, T)
        mean = (x * mask).sum(-1) / mask.sum(-1).clamp_min(1)
        return x * self.gate(mean)[..., None]


class ConvBlock(nn.Module):
    """``(B, T, D)`` -> ``(B, T, filters[-1])`` with padding steps zero."""

    def __init__(self, in_dims: int, filters: tuple[int, ...] = (128, 256, 128), kernels: tuple[int, ...] = (8, 5, 3),
                 squeeze_excite: bool = False) -> None:
        super().__init__()
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.excite = nn.ModuleList()
        channels = in_dims
        for i, (f, k) in enumerate(zip(filters, kernels, strict=True)):
            self.convs.append(nn.Conv1d(channels, f, k))
            self.norms.append(nn.BatchNorm1d(f))
            self.excite.append(SqueezeExcite(f) if squeeze_excite and i < len(filters) - 1 else nn.Identity())
            channels = f
        self.out_channels = channels

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        mask = step_mask(lengths, x.shape[1])[:, None, :].to(x.dtype)
        h = x.transpose(1, 2) * mask
        for conv, norm, excite in zip(self.convs, self.norms, self.excite, strict=True):
            k = conv.kernel_size[0]  # "same" padding, the extra step of an even kernel on the right
            h = _masked_norm(norm, conv(nn.functional.pad(h, ((k - 1) // 2, k // 2))), mask).relu() * mask
            h = excite(h, mask) if isinstance(excite, SqueezeExcite) else h
        return h.transpose(1, 2)


def _masked_norm(norm: nn.BatchNorm1d, h: Tensor, mask: Tensor) -> Tensor:
    """Batch norm whose training statistics come from the cases' steps only (not their padding)."""
    if not norm.training:
        return norm(h)
    count = mask.sum()
    mean = (h * mask).sum((0, 2)) / count
    var = (((h - mean[None, :, None]) * mask) ** 2).sum((0, 2)) / count
    with torch.no_grad():
        m = norm.momentum if norm.momentum is not None else 0.1
        norm.running_mean.mul_(1 - m).add_(m * mean)
        norm.running_var.mul_(1 - m).add_(m * var * count / (count - 1).clamp_min(1))
        norm.num_batches_tracked.add_(1)
    out = (h - mean[None, :, None]) / torch.sqrt(var[None, :, None] + norm.eps)
    return out * norm.weight[None, :, None] + norm.bias[None, :, None]
