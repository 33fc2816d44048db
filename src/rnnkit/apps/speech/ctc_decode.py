"""CTC decoding: greedy (best path) and prefix beam search (Hannun et al. 2014, without a language model).

Both take one utterance's ``(T, V)`` log-probabilities with the blank at index 0 and return token ids
(repeats merged, blanks removed). The beam search sums the probability of every alignment of a
prefix (ending in a blank or not) and keeps the ``beam`` most probable prefixes after each frame.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from rnnkit.apps.speech.vocab import BLANK

NEG_INF = -math.inf


def greedy(log_probs: Tensor) -> list[int]:
    return [tok for tok, _ in greedy_with_frames(log_probs)]


def greedy_with_frames(log_probs: Tensor, start: int = 0, last: int = BLANK) -> list[tuple[int, int]]:
    """``(token, frame)`` of each emission on the best path; ``last``: the previous frame's best token
    (for a stream decoded piece by piece), ``start``: the index of the first frame."""
    out = []
    for t, tok in enumerate(log_probs.argmax(dim=-1).tolist()):
        if tok != BLANK and tok != last:
            out.append((tok, start + t))
        last = tok
    return out


def _lse(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))


def _adder(table: dict[tuple[int, ...], list[float]]):
    def add(prefix: tuple[int, ...], pb: float, pnb: float) -> None:
        cur = table.setdefault(prefix, [NEG_INF, NEG_INF])
        cur[0], cur[1] = _lse(cur[0], pb), _lse(cur[1], pnb)

    return add


def prefix_beam_search(log_probs: Tensor, beam: int = 8, token_prune: float = -12.0) -> list[tuple[list[int], float]]:
    """The ``beam`` best prefixes with their log-probabilities, best first. Tokens whose frame
    log-probability is below ``token_prune`` are not tried (the blank always is)."""
    lp = log_probs.detach().to(torch.float64).cpu().tolist()
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}  # prefix -> (blank, non-blank)
    for frame in lp:
        candidates = [c for c, v in enumerate(frame) if c != BLANK and v >= token_prune]
        nxt: dict[tuple[int, ...], list[float]] = {}
        add = _adder(nxt)

        blank = frame[BLANK]
        for prefix, (pb, pnb) in beams.items():
            total = _lse(pb, pnb)
            add(prefix, total + blank, NEG_INF)  # a blank: the prefix stays, now ending in a blank
            last = prefix[-1] if prefix else None
            for c in candidates:
                p = frame[c]
                if c == last:
                    add(prefix, NEG_INF, pnb + p)  # the repeat merges into the last token
                    add((*prefix, c), NEG_INF, pb + p)  # a new token needs a blank in between
                else:
                    add((*prefix, c), NEG_INF, total + p)
        ranked = sorted(nxt.items(), key=lambda kv: _lse(*kv[1]), reverse=True)[:beam]
        beams = {k: (v[0], v[1]) for k, v in ranked}
    return [(list(k), _lse(*v)) for k, v in sorted(beams.items(), key=lambda kv: _lse(*kv[1]), reverse=True)]


def decode(log_probs: Tensor, beam: int = 1) -> list[int]:
    """Greedy for ``beam`` 1, else the best prefix of the beam search."""
    if beam <= 1:
        return greedy(log_probs)
    return prefix_beam_search(log_probs, beam)[0][0]
