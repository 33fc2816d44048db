"""Search speed of a translate run on CPU: rnnkit's decoding against the same model decoded through a
plain Python loop over ``torch.nn.LSTMCell`` (issue #15); for a ``--arch transformer`` run, rnnkit's
cached decoder steps against torch.nn's decoder layers re-run over the whole prefix at every step.

Both sides run the same search code (:mod:`rnnkit.layers.seq2seq_search`: greedy, and batched beam
search with the GNMT length penalty) on the same weights and the same batches of sentences; they
differ in what computes the recurrence:

- rnnkit: the run's model as it is: the encoder is rnnkit's ``Recurrent`` (the fused executor, lengths
  honoured), every decoder step one ``Recurrent.step()`` call (the C++ streaming step);
- anchor: ``torch.nn.LSTM`` for the encoder (packed sequences, ``pack_padded_sequence``) and one
  ``torch.nn.LSTMCell`` per decoder layer called in the step, with the run's weights copied in; the
  embeddings, attention and output layer are the model's own modules.

For a Transformer run the anchor (:class:`UncachedTransformer`) is the usual torch.nn decoding without
a cache: every step calls each ``torch.nn.TransformerDecoderLayer`` (the run's own modules) on the
prefix so far with a causal mask and keeps the last position; rnnkit's ``decoder.step`` feeds the new
position only, with the self-attention keys and values of the earlier positions cached.

Timed interleaved (rnnkit, anchor, rnnkit, ...) in one process, ``--repeats`` rounds over the same
sentences, median of the rounds; printed: sentences per second of each and the ratio (rnnkit's speed
over the anchor's), and how many outputs of the two agree (they should all, up to ties of float
rounding).

Run (from the repository root)::

    .venv/bin/python benchmarks/translate_search.py runs/g2p data/g2p/test.tsv --limit 1000 --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit._plan import announce


class TorchLSTMSeq2Seq(nn.Module):
    """The anchor: a :class:`~rnnkit.layers.seq2seq.Seq2Seq` of LSTM cells recomputed with torch.nn's
    ``LSTM`` (encoder) and ``LSTMCell`` (decoder steps), its other modules shared with ``model``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        from rnnkit.layers.recurrent import Recurrent

        enc, dec = model.encoder, model.decoder.rnn
        if not (isinstance(enc, Recurrent) and enc.cells[0].name == "lstm" and dec.cells[0].name == "lstm"):
            raise SystemExit("the anchor is torch.nn.LSTM/LSTMCell: give a run trained with --cell lstm")
        self.model, self.decoder = model, _TorchCellDecoder(model.decoder)
        self.encoder = nn.LSTM(enc.input_size, enc.hidden_size, enc.num_layers, bidirectional=enc.bidirectional)
        self.encoder.load_state_dict({k: v for k, v in enc.state_dict().items() if k in self.encoder.state_dict()})

    def encode(self, src: Tensor, lengths: Tensor):
        packed = nn.utils.rnn.pack_padded_sequence(self.model.src_embedding(src), lengths, enforce_sorted=False)
        out, final = self.encoder(packed)
        keys, _ = nn.utils.rnn.pad_packed_sequence(out, total_length=src.shape[0])
        return self.model.start(keys, final, lengths)  # the model's own bridge, attention keys and mask


class _TorchCellDecoder(nn.Module):
    """``AttentionDecoder.step`` with the recurrent layer as a loop over ``torch.nn.LSTMCell``."""

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.inner = decoder
        rnn = decoder.rnn
        self.cells = nn.ModuleList()
        sd = rnn.state_dict()
        for layer in range(rnn.num_layers):
            cell = nn.LSTMCell(rnn.input_size if layer == 0 else rnn.hidden_size, rnn.hidden_size)
            cell.load_state_dict({name: sd[f"{name}_l{layer}"] for name in ("weight_ih", "weight_hh", "bias_ih",
                                                                           "bias_hh")})
            self.cells.append(cell)

    def step(self, tokens: Tensor, state, memory):
        from rnnkit.layers.attention_decoder import DecoderState

        d = self.inner
        x = torch.cat([d.embedding(tokens), state.feed], -1) if d.input_feeding else d.embedding(tokens)
        h_all, c_all = state.rnn
        hs, cs = [], []
        for layer, cell in enumerate(self.cells):
            h, c = cell(x, (h_all[layer], c_all[layer]))
            hs.append(h)
            cs.append(c)
            x = h
        context, weights = d.attention(x, memory.keys, memory.mask, prepared=memory.prepared)
        feed = torch.tanh(d.combine(torch.cat([context, x], -1)))
        return d.out(feed), DecoderState((torch.stack(hs), torch.stack(cs)), feed), weights


class UncachedTransformer(nn.Module):
    """The anchor of a Transformer run: ``model``'s encoder, and at each step torch.nn's decoder layers
    over the whole prefix (no key/value cache). Its attention weights are not computed (zeros)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @property
    def decoder(self) -> UncachedTransformer:  # the search calls model.decoder.step
        return self

    def encode(self, src: Tensor, lengths: Tensor):
        memory, _ = self.model.encode(src, lengths)
        return memory, _Prefix(src.new_zeros(src.shape[1], 0))

    def step(self, tokens: Tensor, state: _Prefix, memory) -> tuple[Tensor, _Prefix, Tensor]:
        prefix = torch.cat([state.tokens, tokens[:, None]], 1)
        logits = self.model.decoder.run(prefix, memory)[:, -1]  # torch.nn's layers over the whole prefix
        return logits, _Prefix(prefix), memory.mask.new_zeros(memory.mask.shape, dtype=logits.dtype)


class _Prefix:
    def __init__(self, tokens: Tensor) -> None:
        self.tokens = tokens

    def select(self, index: Tensor) -> _Prefix:
        return _Prefix(self.tokens.index_select(0, index))


def _decode(model: nn.Module, batches: list[tuple[Tensor, Tensor]], beam: int, alpha: float,
            ratio: float) -> tuple[float, list[list[int]]]:
    """Seconds to decode every batch, and the best output of every sentence."""
    from rnnkit.apps.translate.tokenizer import BOS, EOS
    from rnnkit.layers.seq2seq_search import beam_search, greedy_search

    outs: list[list[int]] = []
    t0 = time.perf_counter()
    with torch.no_grad():
        for src, lengths in batches:
            if beam == 1:
                outs += greedy_search(model, src, lengths, BOS, EOS, ratio)
            else:
                outs += [h[0].tokens for h in beam_search(model, src, lengths, BOS, EOS, beam, alpha, ratio)]
    return time.perf_counter() - t0, outs


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a translate run directory (--cell lstm, or --arch transformer)")
    parser.add_argument("file", type=Path, help="TSV of pairs (the sources are decoded)")
    parser.add_argument("--limit", type=int, default=1000, help="sentences (the first distinct sources)")
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    from rnnkit.apps.translate.cli import _load_run
    from rnnkit.apps.translate.data import read_pairs
    from rnnkit.apps.translate.decode import pad_batch

    torch.set_num_threads(args.threads)
    model, vocab, opts = _load_run(args.run)
    from rnnkit.layers.seq2seq_transformer import TransformerSeq2Seq

    transformer = isinstance(model, TransformerSeq2Seq)
    anchor = (UncachedTransformer(model) if transformer else TorchLSTMSeq2Seq(model)).eval()
    anchor_name = "torch.nn decoder layers over the prefix" if transformer else "torch.nn.LSTMCell loop"
    sources = list(dict.fromkeys(s for s, _ in read_pairs(args.file, opts.header)))[:args.limit]
    ids = sorted((vocab.encode_source(s)[:opts.max_len] for s in sources), key=len)
    ids = [s for s in ids if s]
    batches = [pad_batch(ids[i:i + args.batch_size]) for i in range(0, len(ids), args.batch_size)]
    announce(f"{len(ids)} sentences x beams {args.beams} x 2 decoders x {args.repeats} rounds")
    result: dict[str, Any] = {"run": str(args.run), "anchor": anchor_name, "sentences": len(ids),
                              "threads": args.threads, "batch_size": args.batch_size,
                              "repeats": args.repeats, "beams": {}}
    for beam in args.beams:
        times: dict[str, list[float]] = {"rnnkit": [], "anchor": []}
        outputs: dict[str, list[list[int]]] = {}
        _decode(model, batches[:1], beam, opts.alpha, opts.max_len_ratio)  # warm-up: first-call costs
        _decode(anchor, batches[:1], beam, opts.alpha, opts.max_len_ratio)
        for _ in range(args.repeats):
            for name, m in (("rnnkit", model), ("anchor", anchor)):
                seconds, outputs[name] = _decode(m, batches, beam, opts.alpha, opts.max_len_ratio)
                times[name].append(seconds)
        med = {k: statistics.median(v) for k, v in times.items()}
        agree = sum(a == b for a, b in zip(outputs["rnnkit"], outputs["anchor"], strict=True))
        row = {"rnnkit_sentences_per_second": round(len(ids) / med["rnnkit"], 1),
               "anchor_sentences_per_second": round(len(ids) / med["anchor"], 1),
               "speedup": round(med["anchor"] / med["rnnkit"], 3), "outputs_agree": agree,
               "seconds": {k: [round(s, 3) for s in v] for k, v in times.items()}}
        result["beams"][str(beam)] = row
        name = "greedy" if beam == 1 else f"beam {beam}"
        print(f"{name:>8}: rnnkit {row['rnnkit_sentences_per_second']:8.1f} sentences/s, {anchor_name} "
              f"{row['anchor_sentences_per_second']:8.1f} sentences/s, ratio {row['speedup']:.2f}x; "
              f"outputs agree on {agree}/{len(ids)}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
