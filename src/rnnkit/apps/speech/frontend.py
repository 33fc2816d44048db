"""The convolutional front end: two 3x3 convolutions of stride 2 over (time, mel) (x4 subsampling in
time and frequency), ReLU, then a linear map of the channels x remaining bins to ``d_out``.

``causal=True`` pads time on the left only (an output frame depends on the frames up to its own),
so :meth:`ConvSubsampling.stream` can run it on features as they arrive and give the frames of the
whole-utterance forward; ``causal=False`` pads one frame on each side. Frames past an utterance's
length are set to 0 after each convolution, so a padded batch gives each utterance the frames it
would get alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.apps.speech.features import length_mask


def subsampled_length(lengths: Tensor) -> Tensor:
    """Frames after the two stride-2 convolutions: ceil(ceil(T / 2) / 2)."""
    return torch.div(torch.div(lengths + 1, 2, rounding_mode="floor") + 1, 2, rounding_mode="floor")


class ConvSubsampling(nn.Module):
    def __init__(self, n_mels: int, channels: int, d_out: int, causal: bool) -> None:
        super().__init__()
        self.causal = causal
        self.conv1 = nn.Conv2d(1, channels, 3, stride=2)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=2)
        f1 = (n_mels - 1) // 2 + 1
        f2 = (f1 - 1) // 2 + 1
        self.linear = nn.Linear(channels * f2, d_out)

    def _pad(self, x: Tensor) -> Tensor:
        return F.pad(x, (1, 1, 2, 0) if self.causal else (1, 1, 1, 1))

    def forward(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, T, n_mels)`` -> ``(B, T', d_out)`` and the new lengths."""
        l1 = torch.div(lengths + 1, 2, rounding_mode="floor")
        l2 = torch.div(l1 + 1, 2, rounding_mode="floor")
        x = torch.relu(self.conv1(self._pad(feats.unsqueeze(1))))
        x = x * length_mask(l1, x.shape[2])[:, None, :, None].to(x.dtype)
        x = torch.relu(self.conv2(self._pad(x)))
        x = x * length_mask(l2, x.shape[2])[:, None, :, None].to(x.dtype)
        return self._project(x), l2

    def _project(self, x: Tensor) -> Tensor:
        B, C, T, Fr = x.shape
        return self.linear(x.permute(0, 2, 1, 3).reshape(B, T, C * Fr))

    def stream(self, feats: Tensor, state: tuple[Tensor, Tensor] | None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """A causal front end over the next ``(B, n, n_mels)`` frames (any ``n >= 0``): the output frames
        they complete, and the state (the input rows each convolution has not consumed yet)."""
        if not self.causal:
            raise ValueError("stream() needs a causal front end (a streaming model)")
        x = F.pad(feats.unsqueeze(1), (1, 1))
        if state is None:
            B, C = feats.shape[0], self.conv1.out_channels
            f1 = (feats.shape[-1] - 1) // 2 + 1
            state = (x.new_zeros(B, 1, 2, x.shape[-1]), x.new_zeros(B, C, 2, f1 + 2))
        y, buf1 = self._stream_conv(self.conv1, state[0], x)
        y, buf2 = self._stream_conv(self.conv2, state[1], F.pad(y, (1, 1)))
        return self._project(y), (buf1, buf2)

    @staticmethod
    def _stream_conv(conv: nn.Conv2d, buf: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
        buf = torch.cat([buf, rows], dim=2)
        n_out = (buf.shape[2] - 3) // 2 + 1 if buf.shape[2] >= 3 else 0
        if n_out == 0:
            B = buf.shape[0]
            f_out = (buf.shape[3] - 3) // 2 + 1
            return buf.new_zeros(B, conv.out_channels, 0, f_out), buf
        y = torch.relu(conv(buf[:, :, : 2 * (n_out - 1) + 3]))
        return y, buf[:, :, 2 * n_out:]
