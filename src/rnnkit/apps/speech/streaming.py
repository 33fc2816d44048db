"""Running a streaming (unidirectional) model on audio as it arrives.

:class:`StreamingRecognizer` takes samples in chunks of any size and returns the log-probability
frames they complete: log-mel frames once ``n_fft`` samples are there (the leftover samples wait for
the next chunk), the causal front end over them with its buffered rows
(:meth:`~.frontend.ConvSubsampling.stream`), and the recurrent stack with its state carried from one
call to the next (``Recurrent.step()`` for a single frame, a chunked forward for several). Whatever
the chunking, the frames equal the whole-utterance forward of the same model
(tests/apps/speech/test_speech_streaming.py). Greedy decoding runs alongside (:meth:`partial`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.apps.speech.ctc_decode import greedy_with_frames
from rnnkit.apps.speech.vocab import BLANK, decode


class StreamingRecognizer:
    def __init__(self, model) -> None:
        if not getattr(model, "streaming", False):
            raise ValueError("streaming needs a unidirectional model (speech train --mode streaming)")
        self.model = model.eval()
        self.reset()

    def reset(self) -> None:
        self.pending = torch.zeros(0)
        self.conv_state = None
        self.rnn_state = None
        self.frames = 0  # output frames so far
        self.tokens: list[tuple[int, int]] = []  # (token, frame) of the greedy emissions
        self._last = BLANK

    @property
    def frame_seconds(self) -> float:
        m = self.model
        return 4 * m.hop / m.sample_rate

    @torch.inference_mode()
    def accept(self, samples: Tensor) -> Tensor:
        """The next samples (float, full scale 1) -> ``(k, V)`` log-probabilities of the frames completed."""
        m = self.model
        buf = torch.cat([self.pending, samples.to(torch.float32).reshape(-1)])
        n = m.featurizer.frames(buf.numel())
        V = m.vocab_size
        if n == 0:
            self.pending = buf
            return torch.zeros(0, V)
        feats = m.featurizer(buf[: (n - 1) * m.hop + m.n_fft])
        self.pending = buf[n * m.hop:]
        x = ((feats - m.feat_mean) / m.feat_std)[None]
        x, self.conv_state = m.frontend.stream(x, self.conv_state)
        k = x.shape[1]
        if k == 0:
            return torch.zeros(0, V)
        if k == 1:
            y, self.rnn_state = m.rnn.step(x[:, 0], self.rnn_state)
            y = y[:, None]
        else:
            y, self.rnn_state = m.rnn(x, self.rnn_state)
        out = torch.log_softmax(m.out(y), dim=-1)[0]
        new = greedy_with_frames(out, self.frames, self._last)
        self.tokens += new
        self._last = int(out[-1].argmax())
        self.frames += k
        return out

    def partial(self) -> str:
        """The greedy hypothesis of the frames so far."""
        return decode([t for t, _ in self.tokens], self.model.alphabet)
