"""Pooling a sequence of encoder outputs ``(B, T, H)`` into one vector per case, padding ignored."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.errors import UserError

POOLINGS = ("last", "mean", "max", "attention")


def step_mask(lengths: Tensor, T: int) -> Tensor:
    """(B, T) booleans: True at the steps of each case, False at its padding."""
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


class Pooling(nn.Module):
    """``last``: the output at each case's last step (for a bidirectional encoder the backward half at
    its first step, where that direction ends); ``mean`` / ``max`` over the case's steps; ``attention``:
    a learned score per step, softmax over the case's steps, the weighted sum (Bahdanau-style)."""

    def __init__(self, kind: str, width: int, bidirectional: bool = False) -> None:
        super().__init__()
        if kind not in POOLINGS:
            raise UserError(f"unknown pooling {kind!r}; choose one of: {', '.join(POOLINGS)}")
        self.kind, self.bidirectional = kind, bidirectional
        if kind == "attention":
            self.score = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 1, bias=False))

    def forward(self, out: Tensor, lengths: Tensor) -> Tensor:
        B, T, H = out.shape
        mask = step_mask(lengths, T)
        if self.kind == "last":
            last = out[torch.arange(B, device=out.device), lengths - 1]
            if not self.bidirectional:
                return last
            return torch.cat([last[:, :H // 2], out[:, 0, H // 2:]], -1)
        if self.kind == "mean":
            return (out * mask[..., None]).sum(1) / lengths[:, None].to(out.dtype)
        if self.kind == "max":
            return out.masked_fill(~mask[..., None], float("-inf")).max(1).values
        scores = self.score(out).squeeze(-1).masked_fill(~mask, float("-inf"))
        return (torch.softmax(scores, 1)[..., None] * out).sum(1)
