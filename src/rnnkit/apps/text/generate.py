"""Sampling from a language model: prompt, temperature, top-k, top-p, length, seed; streamed.

:func:`generate_stream` yields the continuation piece by piece as tokens are produced (the prompt
is read once with ``forward``, then every new token is one ``model.step``, for recurrent models
``Recurrent.step``); :func:`generate` joins it, so streaming and non-streaming give the same text.
``temperature=0`` is greedy decoding; ``top_k=1`` keeps only the most likely token. The ``<unk>``
token is never sampled. A fixed ``seed`` reproduces the same text.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from rnnkit.errors import UserError


def sample_next(logits: Tensor, temperature: float, top_k: int, top_p: float, generator: torch.Generator) -> int:
    """One token id from ``logits`` (V,)."""
    logits = logits.detach().double().clone()
    logits[0] = -torch.inf  # <unk>
    if temperature == 0:
        return int(torch.argmax(logits))
    logits = logits / temperature
    if 0 < top_k < logits.numel():
        keep = torch.topk(logits, top_k).indices
        masked = torch.full_like(logits, -torch.inf)
        masked[keep] = logits[keep]
        logits = masked
    if top_p < 1.0:
        order = torch.argsort(logits, descending=True)
        probs = torch.softmax(logits[order], 0)
        before = torch.cumsum(probs, 0) - probs  # mass of the strictly more likely tokens
        drop = order[before >= top_p]
        logits[drop] = -torch.inf
    probs = torch.softmax(logits, 0)
    return int(torch.multinomial(probs, 1, generator=generator))


def check_sampling(temperature: float, top_k: int, top_p: float, max_tokens: int) -> None:
    if temperature < 0:
        raise UserError(f"temperature must be >= 0 (0: greedy), got {temperature}")
    if top_k < 0:
        raise UserError(f"top_k must be >= 0 (0: no limit), got {top_k}")
    if not 0 < top_p <= 1:
        raise UserError(f"top_p must be in (0, 1], got {top_p}")
    if max_tokens < 0:
        raise UserError(f"max_tokens must be >= 0, got {max_tokens}")


@torch.no_grad()
def generate_stream(model, tokenizer, prompt: str = "", max_tokens: int = 200, temperature: float = 1.0,
                    top_k: int = 0, top_p: float = 1.0, seed: int = 0, on_unknown: str = "error") -> Iterator[str]:
    """Yield the continuation of ``prompt`` as text pieces, one per produced token (held back while
    a BPE token ends inside a multi-byte character)."""
    check_sampling(temperature, top_k, top_p, max_tokens)
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    ids = tokenizer.encode(prompt, on_unknown=on_unknown) if prompt else []
    if not ids:  # no prompt (or nothing left of it): start as after a paragraph break
        ids = tokenizer.encode("\n", on_unknown="skip") or [1]
    x = torch.tensor(ids, dtype=torch.long)
    if getattr(model, "context", None) is None:
        logits, state, _ = model(x[:, None])
        logits = logits[-1, 0]
    else:
        window = x[-model.context:][None]
        logits = model(window.t())[0][-1, 0]
        state = window
    out: list[int] = []
    emitted = ""
    for _ in range(max_tokens):
        token = sample_next(logits, temperature, top_k, top_p, gen)
        out.append(token)
        text = tokenizer.decode(out)
        if not text.endswith("\ufffd") and len(text) > len(emitted):
            yield text[len(emitted):]
            emitted = text
        step_logits, state = model.step(torch.tensor([token]), state)
        logits = step_logits[0]
    text = tokenizer.decode(out)
    if len(text) > len(emitted):
        yield text[len(emitted):]


def generate(model, tokenizer, prompt: str = "", **kwargs) -> str:
    """The whole continuation (what :func:`generate_stream` yields, joined)."""
    return "".join(generate_stream(model, tokenizer, prompt, **kwargs))
