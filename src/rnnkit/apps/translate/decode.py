"""Translate lists of sentences: tokenise, batch by length, search, detokenise (order kept)."""

from __future__ import annotations

import torch

from rnnkit.apps.translate.tokenizer import BOS, EOS, PAD, Vocab
from rnnkit.layers.seq2seq_search import beam_search, greedy_search


def pad_batch(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Time-major ``(S, B)`` ids padded with PAD, and the lengths ``(B,)``."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.full((max(1, int(lengths.max())), len(seqs)), PAD, dtype=torch.long)
    for b, s in enumerate(seqs):
        out[:len(s), b] = torch.tensor(s, dtype=torch.long)
    return out, lengths


@torch.no_grad()
def translate(model, vocab: Vocab, sentences: list[str], beam: int = 5, alpha: float = 0.6,
              max_len_ratio: float = 2.0, max_len: int = 100, batch_size: int = 64,
              n_best: int = 1) -> list[list[str]]:
    """The ``n_best`` translations of every sentence (an empty sentence translates to ``""``).

    Sources longer than ``max_len`` tokens are cut there (the model never saw longer ones)."""
    model.eval()
    ids = [vocab.encode_source(s)[:max_len] for s in sentences]
    out: list[list[str]] = [[""] * n_best for _ in sentences]
    order = sorted((i for i, s in enumerate(ids) if s), key=lambda i: len(ids[i]))  # similar lengths together
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        src, lengths = pad_batch([ids[i] for i in chunk])
        if beam == 1 and n_best == 1:
            hyps = [[toks] for toks in greedy_search(model, src, lengths, BOS, EOS, max_len_ratio)]
        else:
            hyps = [[h.tokens for h in hs] for hs in beam_search(model, src, lengths, BOS, EOS, beam, alpha,
                                                                   max_len_ratio, n_best=n_best)]
        for i, hs in zip(chunk, hyps, strict=True):
            texts = [vocab.decode(t) for t in hs]
            out[i] = texts + [""] * (n_best - len(texts))
    return out
