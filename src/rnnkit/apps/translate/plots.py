"""Attention heat maps: for a source sentence, the weight each output token put on each source token
(rows: output tokens, greedy decoding; columns: source tokens), written as PNG (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

MAX_LABELS = 60  # longer sides are cut (the picture would be unreadable anyway)


def plot_attention(path: Path, weights: np.ndarray, source: list[str], output: list[str], title: str) -> Path:
    """``weights`` (len(output), len(source)) as a heat map at ``path`` (written atomically)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from rnnkit.io.atomic import save_figure_atomic

    weights = weights[:MAX_LABELS, :MAX_LABELS]
    source, output = source[:weights.shape[1]], output[:weights.shape[0]]
    fig, ax = plt.subplots(figsize=(min(14.0, 2.0 + 0.32 * len(source)), min(14.0, 1.8 + 0.3 * len(output))))
    im = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(source)), source, rotation=90, fontsize=8)
    ax.set_yticks(range(len(output)), output, fontsize=8)
    ax.set_xlabel("source token")
    ax.set_ylabel("output token (greedy)")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04, label="attention weight")
    out = save_figure_atomic(fig, path)
    plt.close(fig)
    return out


def write_attention_maps(run_dir: Path, model, vocab, sources: list[str], max_len: int, max_len_ratio: float,
                         count: int = 4) -> list[str]:
    """Heat maps ``attention_1.png``... for the first ``count`` non-empty ``sources``; their file names.

    For the Transformer the weights are its last decoder layer's cross-attention, averaged over heads."""
    import torch

    from rnnkit.apps.translate.tokenizer import BOS, EOS
    from rnnkit.io.confine import inside_run_dir
    from rnnkit.layers.seq2seq_search import greedy_attention

    names: list[str] = []
    model.eval()
    for text in sources:
        ids = vocab.encode_source(text)[:max_len]
        if not ids:
            continue
        tokens, weights = greedy_attention(model, torch.tensor(ids), BOS, EOS, max_len_ratio)
        out_pieces = [*vocab.target_pieces(tokens), "</s>"][:weights.shape[0]]
        name = f"attention_{len(names) + 1}.png"
        short = text if len(text) <= 60 else text[:57] + "..."
        plot_attention(inside_run_dir(run_dir, name), weights.float().cpu().numpy(), vocab.source_pieces(ids),
                       out_pieces, f"{short!r} -> {vocab.decode(tokens)[:60]!r}")
        names.append(name)
        if len(names) == count:
            break
    return names
