"""CTC decoding: greedy (best path) and prefix beam search (Hannun et al. 2014, without a language model).

Both take one utterance's ``(T, V)`` log-probabilities with the blank at index 0 and return token ids
(repeats merged, blanks removed). The beam search sums the probability of every alignment of a
prefix (ending in a blank or not) and keeps the ``beam`` most probable prefixes after each frame.
With a :class:`Lexicon` it only extends prefixes into words of the list (a space only after a whole
word, and the result ends with one): a closed vocabulary, no word probabilities.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from rnnkit.apps.speech.vocab import BLANK
from rnnkit.errors import UserError

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


class Lexicon:
    """A closed word list for the beam search: the token ids of every word and of every word's prefix."""

    def __init__(self, words: list[str], alphabet: str) -> None:
        from rnnkit.apps.speech.vocab import check_text, encode

        self.space = alphabet.index(" ") + 1
        self.words: set[tuple[int, ...]] = set()
        self.prefixes: set[tuple[int, ...]] = set()
        for w in words:
            ids = tuple(encode(check_text(w, "lexicon", alphabet), alphabet))
            if self.space in ids:
                raise UserError(f"lexicon entry {w!r} has a space: give one word per entry")
            self.words.add(ids)
            self.prefixes.update(ids[:k] for k in range(1, len(ids) + 1))
        if not self.words:
            raise UserError("the lexicon is empty")

    def partial(self, prefix: tuple[int, ...]) -> tuple[int, ...]:
        """The tokens after the last space."""
        for k in range(len(prefix) - 1, -1, -1):
            if prefix[k] == self.space:
                return prefix[k + 1:]
        return prefix

    def allows(self, prefix: tuple[int, ...], token: int) -> bool:
        part = self.partial(prefix)
        if token == self.space:
            return part in self.words
        return (*part, token) in self.prefixes

    def complete(self, prefix: tuple[int, ...]) -> bool:
        part = self.partial(prefix)
        return not part or part in self.words


def load_lexicon(path, alphabet: str) -> Lexicon:
    """A word list file (UTF-8, words separated by white space or lines) as a :class:`Lexicon`."""
    from pathlib import Path

    from rnnkit.io.text_file import decode_utf8

    path = Path(path)
    if not path.is_file():
        raise UserError(f"lexicon {path} not found" if not path.exists() else f"lexicon {path} is not a file")
    if path.stat().st_size > 64 * 2**20:
        raise UserError(f"lexicon {path} is over 64 MiB: give a word list")
    text = decode_utf8(path.read_bytes(), str(path))
    return Lexicon(sorted(set(text.split())), alphabet)


def prefix_beam_search(log_probs: Tensor, beam: int = 8, token_prune: float = -12.0,
                       lexicon: Lexicon | None = None) -> list[tuple[list[int], float]]:
    """The ``beam`` best prefixes with their log-probabilities, best first. Tokens whose frame
    log-probability is below ``token_prune`` are not tried (the blank always is). With ``lexicon``,
    only prefixes it allows (and at the end, only those ending with a whole word when there are any)."""
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
                if lexicon is not None and not lexicon.allows(prefix, c):
                    continue
                if c == last:
                    add((*prefix, c), NEG_INF, pb + p)  # a new token needs a blank in between
                else:
                    add((*prefix, c), NEG_INF, total + p)
        ranked = sorted(nxt.items(), key=lambda kv: _lse(*kv[1]), reverse=True)[:beam]
        beams = {k: (v[0], v[1]) for k, v in ranked}
    final = sorted(beams.items(), key=lambda kv: _lse(*kv[1]), reverse=True)
    if lexicon is not None:
        final = [kv for kv in final if lexicon.complete(kv[0])] or final
    return [(list(k), _lse(*v)) for k, v in final]


def decode(log_probs: Tensor, beam: int = 1, lexicon: Lexicon | None = None) -> list[int]:
    """Greedy for ``beam`` 1 without a lexicon, else the best prefix of the beam search."""
    if beam <= 1 and lexicon is None:
        return greedy(log_probs)
    return prefix_beam_search(log_probs, beam, lexicon=lexicon)[0][0]
