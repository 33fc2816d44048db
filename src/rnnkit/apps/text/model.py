"""Language models: embedding -> rnnkit ``Recurrent`` -> tied output, and a causal Transformer baseline.

Both take time-major token ids ``(T, B)`` and a state (``None``: start fresh) and return
``(logits (T, B, V), state, hidden (T, B, H))``; ``step(ids (B,), state)`` advances one token
(generation). AWD-LSTM's regularisers (Merity, Keskar & Socher 2018) are options of
:class:`RecurrentLM`: ``embedding_dropout`` (whole words of the embedding matrix), ``input_dropout``
(locked dropout on the embeddings), ``variational_dropout`` and ``weight_drop``/``zoneout`` (passed
to ``Recurrent``), ``output_dropout`` (locked dropout on the last layer's output); AR/TAR are in the
task (they act on ``hidden``). ``tie_weights`` shares the embedding with the output layer (a linear
projection bridges ``hidden_size != embedding_size``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.io.registry import register_model
from rnnkit.layers.recurrent import Recurrent


def locked_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """One dropout mask per sequence, shared over time (``x`` is (T, B, H))."""
    if not training or p == 0:
        return x
    mask = x.new_empty(1, x.shape[1], x.shape[2]).bernoulli_(1 - p) / (1 - p)
    return x * mask


def embedding_dropout(weight: Tensor, p: float, training: bool) -> Tensor:
    """Drop whole rows (words) of the embedding matrix, one mask per forward pass."""
    if not training or p == 0:
        return weight
    mask = weight.new_empty(weight.shape[0], 1).bernoulli_(1 - p) / (1 - p)
    return weight * mask


@register_model("text.recurrent_lm")
class RecurrentLM(nn.Module):
    def __init__(self, vocab_size: int, cell: str = "lstm", embedding_size: int = 128, hidden_size: int = 512,
                 num_layers: int = 1, tie_weights: bool = True, embedding_dropout: float = 0.0,
                 input_dropout: float = 0.0, variational_dropout: float = 0.0, weight_drop: float = 0.0,
                 zoneout: float = 0.0, output_dropout: float = 0.0, layer_norm: bool = False,
                 backend: str = "auto") -> None:
        super().__init__()
        self.cfg = {"vocab_size": vocab_size, "cell": cell, "embedding_size": embedding_size,
                    "hidden_size": hidden_size, "num_layers": num_layers, "tie_weights": tie_weights,
                    "embedding_dropout": embedding_dropout, "input_dropout": input_dropout,
                    "variational_dropout": variational_dropout, "weight_drop": weight_drop,
                    "zoneout": zoneout, "output_dropout": output_dropout, "layer_norm": layer_norm,
                    "backend": backend}
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        extra: dict[str, Any] = {"layer_norm": True} if layer_norm else {}
        self.rnn = Recurrent(cell, embedding_size, hidden_size, num_layers,
                             variational_dropout=variational_dropout, weight_drop=weight_drop,
                             zoneout=zoneout, backend=backend, **extra)
        out = self.rnn.output_size
        self.proj = nn.Linear(out, embedding_size) if tie_weights and out != embedding_size else None
        self.decoder = nn.Linear(embedding_size if tie_weights else out, vocab_size)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        if tie_weights:
            self.decoder.weight = self.embedding.weight
        else:
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def get_config(self) -> dict[str, Any]:
        return dict(self.cfg)

    @property
    def context(self) -> int | None:
        return None  # unbounded: the recurrent state carries it

    def _head(self, h: Tensor) -> Tensor:
        if self.proj is not None:
            h = self.proj(h)
        return self.decoder(h)

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any, Tensor]:
        c = self.cfg
        w = embedding_dropout(self.embedding.weight, c["embedding_dropout"], self.training)
        e = locked_dropout(nn.functional.embedding(x, w), c["input_dropout"], self.training)
        h, state = self.rnn(e, state)
        out = locked_dropout(h, c["output_dropout"], self.training)
        return self._head(out), state, h

    def step(self, ids: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """One token per row, ``ids`` (B,) -> (logits (B, V), state); evaluation mode."""
        h, state = self.rnn.step(self.embedding(ids), state)
        return self._head(h), state


@register_model("text.transformer_lm")
class TransformerLM(nn.Module):
    """A pre-norm causal Transformer with learned positions and tied embeddings; ``context`` tokens."""

    def __init__(self, vocab_size: int, d_model: int = 256, num_layers: int = 2, num_heads: int = 4,
                 context: int = 128, dropout: float = 0.1) -> None:
        super().__init__()
        self.cfg = {"vocab_size": vocab_size, "d_model": d_model, "num_layers": num_layers,
                    "num_heads": num_heads, "context": context, "dropout": dropout}
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.position = nn.Embedding(context, d_model)
        layer = nn.TransformerEncoderLayer(d_model, num_heads, 4 * d_model, dropout, batch_first=False,
                                           norm_first=True, activation="gelu")
        self.blocks = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.decoder = nn.Linear(d_model, vocab_size)
        nn.init.normal_(self.embedding.weight, std=0.02)
        nn.init.normal_(self.position.weight, std=0.02)
        nn.init.zeros_(self.decoder.bias)
        self.decoder.weight = self.embedding.weight

    def get_config(self) -> dict[str, Any]:
        return dict(self.cfg)

    @property
    def context(self) -> int:
        return self.cfg["context"]

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any, Tensor]:
        """``state`` is ignored (each window stands alone); windows longer than ``context`` are cut
        into ``context``-token pieces."""
        T = x.shape[0]
        if self.context < T:
            parts = [self.forward(x[s:s + self.context])[::2] for s in range(0, T, self.context)]
            return torch.cat([p[0] for p in parts]), None, torch.cat([p[1] for p in parts])
        pos = torch.arange(T, device=x.device)
        h = self.embedding(x) * math.sqrt(self.cfg["d_model"]) + self.position(pos)[:, None]
        mask = nn.Transformer.generate_square_subsequent_mask(T, device=x.device)
        h = self.norm(self.blocks(h, mask=mask, is_causal=True))
        return self.decoder(h), None, h

    def step(self, ids: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """``state`` is the window of past tokens (B, <= context)."""
        window = ids[:, None] if state is None else torch.cat([state, ids[:, None]], 1)[:, -self.context:]
        logits = self.forward(window.t())[0]
        return logits[-1], window


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def transformer_width(target_params: int, vocab_size: int, num_layers: int, context: int, heads: int) -> int:
    """The ``d_model`` (a multiple of ``heads``, and of 8) whose Transformer has about ``target_params``."""
    best, best_err = heads, math.inf
    step = math.lcm(heads, 8)
    for d in range(step, 4097, step):
        n = vocab_size * d + vocab_size + context * d + num_layers * (12 * d * d + 13 * d) + 2 * d
        if abs(n - target_params) < best_err:
            best, best_err = d, abs(n - target_params)
    return best
