"""Greedy and batched beam search for :class:`~rnnkit.layers.seq2seq.Seq2Seq`-like models.

The model provides ``encode(src (S, B), lengths (B,)) -> (memory, state)`` and
``decoder.step(tokens (N,), state, memory) -> (logits (N, V), state, weights)``; memory and state have
``select(index)``. The source is encoded once; beam search expands its memory to ``B * beam`` rows.

Length: a sentence of ``S_b`` source tokens gets at most ``ceil(max_len_ratio * S_b) + max_len_extra``
target tokens (EOS included); a hypothesis that reaches it ends there without EOS.

Beam search keeps ``beam`` live hypotheses per sentence. Each step takes the ``2 * beam`` best
extensions: those among the first ``beam`` that end in EOS are finished; the ``beam`` best that do not
end in EOS live on. A sentence is done with ``beam`` finished hypotheses (or at its length limit, when
the live ones are finished as they are). Finished hypotheses are ranked by the GNMT length penalty
(Wu et al. 2016): ``log P(Y) / lp(Y)``, ``lp(Y) = ((5 + |Y|) / 6) ** alpha`` (``alpha`` 0: raw
log-probability). With ``beam`` 1 this is greedy decoding exactly. BOS is never generated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Hypothesis", "beam_search", "greedy_attention", "greedy_search", "length_penalty", "max_lengths"]


@dataclass
class Hypothesis:
    tokens: list[int]  # without BOS and EOS
    score: float  # length-normalised log-probability
    log_prob: float


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's ``((5 + length) / 6) ** alpha``."""
    return ((5.0 + length) / 6.0) ** alpha


def max_lengths(lengths: Tensor, ratio: float, extra: int) -> Tensor:
    """The most target tokens (EOS included) per sentence."""
    return (lengths.double() * ratio).ceil().long() + extra


@torch.no_grad()
def greedy_search(model, src: Tensor, lengths: Tensor, bos: int, eos: int, max_len_ratio: float = 2.0,
                  max_len_extra: int = 5) -> list[list[int]]:
    """The argmax token at every step, per sentence, without BOS and EOS."""
    memory, state = model.encode(src, lengths)
    B = src.shape[1]
    limit = max_lengths(lengths, max_len_ratio, max_len_extra).tolist()
    tokens = torch.full((B,), bos, dtype=torch.long, device=src.device)
    out: list[list[int]] = [[] for _ in range(B)]
    done = [False] * B
    for t in range(max(limit)):
        logits, state, _ = model.decoder.step(tokens, state, memory)
        logits[:, bos] = -math.inf  # BOS only ever starts a sentence
        tokens = logits.argmax(-1)
        for b, tok in enumerate(tokens.tolist()):
            if done[b]:
                continue
            if tok == eos:
                done[b] = True
            else:
                out[b].append(tok)
                done[b] = t + 1 >= limit[b]
        if all(done):
            break
    return out


@torch.no_grad()
def beam_search(model, src: Tensor, lengths: Tensor, bos: int, eos: int, beam: int = 5, alpha: float = 0.6,
                max_len_ratio: float = 2.0, max_len_extra: int = 5, n_best: int = 1) -> list[list[Hypothesis]]:
    """The ``n_best`` (<= ``beam``) best hypotheses per sentence, best first (see the module docstring)."""
    if beam < 1 or not 1 <= n_best <= beam:
        raise ValueError(f"need beam >= 1 and 1 <= n_best <= beam, got beam {beam}, n_best {n_best}")
    memory, state = model.encode(src, lengths)
    B, K, dev = src.shape[1], beam, src.device
    rows = torch.arange(B, device=dev).repeat_interleave(K)
    memory, state = memory.select(rows), state.select(rows)
    limit = max_lengths(lengths, max_len_ratio, max_len_extra).tolist()
    scores = torch.full((B, K), -math.inf, device=dev)
    scores[:, 0] = 0.0  # all beams start identical: extend only the first
    tokens = torch.full((B * K,), bos, dtype=torch.long, device=dev)
    history = torch.empty(B * K, 0, dtype=torch.long, device=dev)
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    done = [False] * B

    def finish(b: int, seq: list[int], logp: float, length: int) -> None:
        finished[b].append(Hypothesis(seq, logp / length_penalty(length, alpha), logp))

    for t in range(max(limit)):
        logits, state, _ = model.decoder.step(tokens, state, memory)
        logits[:, bos] = -math.inf  # BOS only ever starts a sentence
        logp = torch.log_softmax(logits.float(), -1)
        V = logp.shape[-1]
        cand = (scores.reshape(B * K, 1) + logp).reshape(B, K * V)
        top_s, top_i = cand.topk(min(2 * K, K * V), dim=1)
        top_beam, top_tok = top_i // V, top_i % V
        is_eos = top_tok == eos
        # finished: EOS among the first K extensions of a live sentence
        for b, j in (is_eos[:, :K] & torch.isfinite(top_s[:, :K])).nonzero().tolist():
            if not done[b]:
                finish(b, history[b * K + int(top_beam[b, j])].tolist(), float(top_s[b, j]), t + 1)
        alive_s, alive_j = top_s.masked_fill(is_eos, -math.inf).topk(K, dim=1)
        src_rows = (torch.arange(B, device=dev)[:, None] * K + top_beam.gather(1, alive_j)).reshape(-1)
        new_tok = top_tok.gather(1, alive_j).reshape(-1)
        history = torch.cat([history.index_select(0, src_rows), new_tok[:, None]], 1)
        state = state.select(src_rows)
        tokens, scores = new_tok, alive_s
        for b in range(B):
            if done[b]:
                continue
            if t + 1 >= limit[b]:  # the length limit: the live hypotheses end here, without EOS
                for k in range(K):
                    if len(finished[b]) < K and math.isfinite(float(alive_s[b, k])):
                        finish(b, history[b * K + k].tolist(), float(alive_s[b, k]), t + 1)
                done[b] = True
            elif len(finished[b]) >= K:
                done[b] = True
        if all(done):
            break
    return [sorted(f, key=lambda h: -h.score)[:n_best] for f in finished]


@torch.no_grad()
def greedy_attention(model, src: Tensor, bos: int, eos: int, max_len_ratio: float = 2.0,
                     max_len_extra: int = 5) -> tuple[list[int], Tensor]:
    """Greedy decoding of one source ``src`` (S,) keeping the attention: ``(tokens without BOS and EOS,
    weights (steps, S))``, one row per generated token (the EOS step included when it is reached)."""
    lengths = torch.tensor([src.shape[0]])
    memory, state = model.encode(src[:, None], lengths)
    limit = int(max_lengths(lengths, max_len_ratio, max_len_extra)[0])
    token = torch.full((1,), bos, dtype=torch.long, device=src.device)
    out: list[int] = []
    rows: list[Tensor] = []
    for _ in range(limit):
        logits, state, weights = model.decoder.step(token, state, memory)
        logits[:, bos] = -math.inf
        token = logits.argmax(-1)
        rows.append(weights[0])
        if int(token) == eos:
            break
        out.append(int(token))
    return out, torch.stack(rows)
