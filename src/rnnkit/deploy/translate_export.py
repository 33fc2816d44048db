"""ONNX export of the translation app's recurrent encoder-decoder (:class:`rnnkit.layers.seq2seq.Seq2Seq`):
two graphs, run by a search loop (greedy or beam) around them.

- encoder: ``src`` int64 (source, batch) token ids, padded with ``pad_id`` after each sentence,
  ``lengths`` int64 (batch,) -> ``keys`` (batch, source, K), ``prepared`` (the attention's key side,
  computed once), ``mask`` bool (batch, source), ``h`` [, ``c``] (decoder layers, batch, n): the
  decoder's initial state, ``feed`` (batch, A): the initial attentional vector (zeros). Built from
  the Recurrent stack's graph (``build_onnx_model`` with lengths: any source length).
- decoder step: ``tokens`` int64 (batch,), ``h`` [, ``c``], ``feed``, ``keys``, ``prepared``, ``mask``
  -> ``logits`` (batch, vocab), ``h_out`` [, ``c_out``], ``feed_out``, ``weights`` (batch, source):
  one target position (input feeding, attention, the tied output layer), traced by ``torch.onnx``.

A search feeds the encoder's outputs to the first step with ``tokens`` = BOS, then each step's
``*_out`` back in (beam search reorders the rows of every input). :class:`OnnxSeq2Seq` wraps the two
sessions in the interface of :mod:`rnnkit.layers.seq2seq_search`, so rnnkit's own greedy and beam
search run on the files (tests: the same tokens as on the model). The Transformer baseline is not
exported; only the evaluation form is (dropout acts in train mode).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit.deploy.onnx_export import OnnxExportError, _require_onnx, build_onnx_model, onnx_session
from rnnkit.deploy.onnx_nodes import GraphNodes
from rnnkit.deploy.traced_export import check_traced_opset, traced_onnx
from rnnkit.io.atomic import write_bytes_atomic
from rnnkit.layers.attention_decoder import DecoderState, Memory

#: the largest logit difference the written files may show against the model
TOLERANCE = 1e-4
STATE_NAMES = ("h", "c")


def check_seq2seq(model: nn.Module) -> None:
    from rnnkit.layers.seq2seq import Seq2Seq

    if not isinstance(model, Seq2Seq):
        raise OnnxExportError(f"export_seq2seq takes the recurrent Seq2Seq, not {type(model).__name__} "
                              "(the Transformer baseline is not exported)")
    if model.training and model.cfg["dropout"] > 0:
        raise OnnxExportError("the translation model is in train mode with dropout (random masks per call): "
                              "call .eval() before exporting")


def _state_count(model: nn.Module) -> int:
    return len(model.decoder.state_sizes())


def build_encoder_onnx(model: nn.Module, *, opset: int | None = None) -> Any:
    """The encoder graph's ``ModelProto`` (see the module docstring)."""
    check_seq2seq(model)
    onnx = _require_onnx()
    helper, F = onnx.helper, onnx.TensorProto.FLOAT
    encoder = model.encoder
    proto = build_onnx_model(encoder, opset=opset, lengths=True)
    graph = proto.graph
    g = GraphNodes(onnx)
    D, L_dec = model.directions, model.decoder.rnn.num_layers
    # front: ids -> embedding rows (the stack's input); zero initial state of the encoder
    g.add("Gather", [g.const("src_embedding", model.src_embedding.weight), "src"], "input", axis=0)
    batch = g.add("Slice", [g.add("Shape", ["src"], "src_shape"), g.const("one", [1]), g.const("two", [2])],
                  "batch_size")
    for info in [i for i in graph.input if i.name in ("h0", "c0")]:
        size = info.type.tensor_type.shape.dim[2].dim_value
        shape = g.add("Concat", [g.const(f"{info.name}_layers", [encoder.num_layers * D]), batch,
                                 g.const(f"{info.name}_width", [size])], f"{info.name}_shape", axis=0)
        g.nodes.append(helper.make_node("ConstantOfShape", [shape], [info.name], name=f"{info.name}_zeros",
                                        value=helper.make_tensor("zero_f", F, [1], [0.0])))
    front = len(g.nodes)
    # back: the decoder's initial state (the bridge over the last layer's directions), keys, mask, feed
    outputs = []
    for k, (final, bridge) in enumerate(zip(("h_n", "c_n"), model.bridge, strict=False)):
        last = g.add("Slice", [final, g.const(f"last_from_{k}", [-D]), g.const(f"last_to_{k}", [1 << 30]),
                               g.const("axis0", [0])], f"enc_last_{k}")  # (D, B, n)
        side = g.add("Reshape", [g.add("Transpose", [last], f"enc_last_t_{k}", perm=[1, 0, 2]),
                                 g.const(f"bridge_shape_{k}", [0, -1])], f"enc_side_{k}")  # (B, D n)
        init = g.add("Tanh", [g.linear(side, bridge, f"bridge_{k}")], f"bridge_tanh_{k}")
        name = STATE_NAMES[k]
        g.add("Expand", [g.add("Unsqueeze", [init, "axis0"], f"bridge_1_{k}"),
                         g.const(f"layers_{k}", [L_dec, 1, 1])], name)
        outputs.append(helper.make_tensor_value_info(name, F, [L_dec, "batch", bridge.out_features]))
    keys = g.add("Transpose", ["output"], "keys", perm=[1, 0, 2])
    attention = model.decoder.attention
    key_proj = getattr(attention, "key_proj", None)
    if key_proj is None:  # dot attention: the keys themselves
        g.add("Identity", [keys], "prepared")
    elif key_proj.bias is not None:
        g.linear(keys, key_proj, "prepared")
    else:
        g.add("MatMul", [keys, g.const("key_proj_wt", key_proj.weight.t())], "prepared")
    source = g.add("Slice", ["src_shape", g.const("zero", [0]), "one"], "source_len")
    positions = g.add("Range", [g.add("Squeeze", [g.const("zero_i", [0])], "zero_s"),
                                g.add("Squeeze", [source], "source_s"),
                                g.add("Squeeze", [g.const("one_i", [1])], "one_s")], "positions")
    g.add("Less", [g.add("Unsqueeze", [positions, "axis0"], "positions_row"),
                   g.add("Unsqueeze", ["lengths", g.const("axis1", [1])], "lengths_col")], "mask")
    width = model.decoder.attentional_size
    feed_shape = g.add("Concat", [batch, g.const("feed_width", [width])], "feed_shape", axis=0)
    g.nodes.append(helper.make_node("ConstantOfShape", [feed_shape], ["feed"], name="feed_zeros",
                                    value=helper.make_tensor("zero_feed", F, [1], [0.0])))
    nodes = [*g.nodes[:front], *graph.node, *g.nodes[front:]]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(g.initializers)
    K = model.decoder.attention.key_size
    del graph.input[:]
    graph.input.extend([helper.make_tensor_value_info("src", onnx.TensorProto.INT64, ["source", "batch"]),
                        helper.make_tensor_value_info("lengths", onnx.TensorProto.INT64, ["batch"])])
    del graph.output[:]
    prepared_width = K if key_proj is None else key_proj.out_features
    graph.output.extend([helper.make_tensor_value_info("keys", F, ["batch", "source", K]),
                         helper.make_tensor_value_info("prepared", F, ["batch", "source", prepared_width]),
                         helper.make_tensor_value_info("mask", onnx.TensorProto.BOOL, ["batch", "source"]),
                         *outputs, helper.make_tensor_value_info("feed", F, ["batch", width])])
    graph.name = "rnnkit_seq2seq_encoder"
    _set_props(helper, proto, model)
    onnx.checker.check_model(proto, full_check=True)
    return proto


class DecoderStepGraph(nn.Module):
    """One decoder step with its state and memory as plain tensors (the traced module): a
    one-component state (``h``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.decoder = model.decoder

    def run(self, tokens: Tensor, states: tuple[Tensor, ...], feed: Tensor, keys: Tensor, prepared: Tensor,
            mask: Tensor) -> tuple[Tensor, ...]:
        state = DecoderState(states if len(states) > 1 else states[0], feed)
        logits, new, weights = self.decoder.step(tokens, state, Memory(keys, prepared, mask))
        rnn = new.rnn if isinstance(new.rnn, tuple) else (new.rnn,)
        return (logits, *rnn, new.feed, weights)

    def forward(self, tokens: Tensor, h: Tensor, feed: Tensor, keys: Tensor, prepared: Tensor,
                mask: Tensor) -> tuple[Tensor, ...]:
        return self.run(tokens, (h,), feed, keys, prepared, mask)


class TwoStateDecoderStepGraph(DecoderStepGraph):
    """:class:`DecoderStepGraph` of an LSTM decoder (``h``, ``c``)."""

    def forward(self, tokens: Tensor, h: Tensor, c: Tensor, feed: Tensor, keys: Tensor,  # type: ignore[override]
                prepared: Tensor, mask: Tensor) -> tuple[Tensor, ...]:
        return self.run(tokens, (h, c), feed, keys, prepared, mask)


def _memory_and_state(model: nn.Module, src: Tensor, lengths: Tensor) -> tuple[Memory, DecoderState]:
    with torch.no_grad():
        return model.encode(src, lengths)


def _example_source(model: nn.Module, lengths: list[int], seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    V = model.src_embedding.num_embeddings
    src = torch.randint(1, V, (max(lengths), len(lengths)), generator=g)
    for b, n in enumerate(lengths):
        src[n:, b] = model.pad_id
    return src, torch.tensor(lengths)


def _step_inputs(model: nn.Module, tokens: Tensor, memory: Memory, state: DecoderState) -> tuple[Tensor, ...]:
    rnn = state.rnn if isinstance(state.rnn, tuple) else (state.rnn,)
    return (tokens, *rnn, state.feed, memory.keys, memory.prepared, memory.mask)


def build_decoder_step_onnx(model: nn.Module, *, opset: int | None = None) -> Any:
    """The decoder step graph's ``ModelProto`` (see the module docstring), traced by torch.onnx."""
    check_seq2seq(model)
    check_traced_opset(opset, "a decoder step")
    src, lengths = _example_source(model, [7, 4, 2], 0)
    memory, state = _memory_and_state(model, src, lengths)
    example = _step_inputs(model, torch.randint(1, model.decoder.vocab_size, (3,)), memory, state)
    B, S = torch.export.Dim("batch"), torch.export.Dim("source")
    n = _state_count(model)
    dims = ({0: B}, *({1: B} for _ in range(n)), {0: B}, {0: B, 1: S}, {0: B, 1: S}, {0: B, 1: S})
    states = list(STATE_NAMES[:n])
    graph = (TwoStateDecoderStepGraph if n == 2 else DecoderStepGraph)(model).eval()
    proto = traced_onnx(graph, example, dims,
                        input_names=["tokens", *states, "feed", "keys", "prepared", "mask"],
                        output_names=["logits", *(f"{s}_out" for s in states), "feed_out", "weights"],
                        opset=opset, backends=("reference",))  # one step: the reference cell step
    _set_props(_require_onnx().helper, proto, model)
    return proto


def _set_props(helper: Any, proto: Any, model: nn.Module) -> None:
    helper.set_model_props(proto, {"pad_id": str(model.pad_id), "vocab_size": str(model.decoder.vocab_size),
                                   "states": ",".join(STATE_NAMES[:_state_count(model)])})


@dataclass
class _OnnxMemory:
    keys: np.ndarray
    prepared: np.ndarray
    mask: np.ndarray

    def select(self, index: Tensor) -> _OnnxMemory:
        i = index.numpy()
        return _OnnxMemory(self.keys[i], self.prepared[i], self.mask[i])


@dataclass
class _OnnxState:
    rnn: tuple[np.ndarray, ...]
    feed: np.ndarray

    def select(self, index: Tensor) -> _OnnxState:
        i = index.numpy()
        return _OnnxState(tuple(s[:, i] for s in self.rnn), self.feed[i])


class OnnxSeq2Seq:
    """The exported encoder and decoder step in onnxruntime, with the interface rnnkit's searches use
    (``encode``, ``decoder.step``): ``greedy_search(OnnxSeq2Seq(enc, dec), src, lengths, bos, eos)``."""

    def __init__(self, encoder: str | os.PathLike[str] | bytes, decoder_step: str | os.PathLike[str] | bytes) -> None:
        self.encoder_session, self.step_session = onnx_session(encoder), onnx_session(decoder_step)
        self.states = self.step_session.get_modelmeta().custom_metadata_map["states"].split(",")
        self.decoder = self  # the searches call model.decoder.step

    def encode(self, src: Tensor, lengths: Tensor) -> tuple[_OnnxMemory, _OnnxState]:
        out = dict(zip([o.name for o in self.encoder_session.get_outputs()],
                       self.encoder_session.run(None, {"src": src.numpy(), "lengths": lengths.numpy()}), strict=True))
        return (_OnnxMemory(out["keys"], out["prepared"], out["mask"]),
                _OnnxState(tuple(out[s] for s in self.states), out["feed"]))

    def step(self, tokens: Tensor, state: _OnnxState, memory: _OnnxMemory) -> tuple[Tensor, _OnnxState, Tensor]:
        feeds = {"tokens": tokens.numpy(), **dict(zip(self.states, state.rnn, strict=True)), "feed": state.feed,
                 "keys": memory.keys, "prepared": memory.prepared, "mask": memory.mask}
        out = dict(zip([o.name for o in self.step_session.get_outputs()], self.step_session.run(None, feeds),
                       strict=True))
        new = _OnnxState(tuple(out[f"{s}_out"] for s in self.states), out["feed_out"])
        return torch.from_numpy(out["logits"]), new, torch.from_numpy(out["weights"])


def export_seq2seq(model: nn.Module, encoder_path: str | os.PathLike[str], step_path: str | os.PathLike[str], *,
                   opset: int | None = None, check: bool = True) -> tuple[Any, Any]:
    """Write the encoder and decoder step graphs (temporary files and rename); with ``check``, first
    compare them in onnxruntime with the model: every step's logits over greedy decodings of random
    sources of lengths and batch sizes the trace did not see, and the decoded tokens."""
    check_seq2seq(model)
    model = model.eval()
    encoder, step = build_encoder_onnx(model, opset=opset), build_decoder_step_onnx(model, opset=opset)
    data = encoder.SerializeToString(), step.SerializeToString()
    if check:
        verify(model, *data)
    write_bytes_atomic(step_path, data[1])
    write_bytes_atomic(encoder_path, data[0])
    return encoder, step


def verify(model: nn.Module, encoder: str | os.PathLike[str] | bytes, step: str | os.PathLike[str] | bytes,
           steps: int = 6) -> float:
    """Largest logit difference between the files and the model over ``steps`` teacher-forced steps
    of random sources (batch 1 and 5, lengths 1 to 11); :class:`OnnxExportError` above :data:`TOLERANCE`."""
    exported = OnnxSeq2Seq(encoder, step)
    worst = 0.0
    for k, lengths in enumerate(([3], [11, 5, 1, 8, 2])):
        src, lens = _example_source(model, lengths, 10 + k)
        memory, state = _memory_and_state(model, src, lens)
        o_memory, o_state = exported.encode(src, lens)
        g = torch.Generator().manual_seed(k)
        for _ in range(steps):
            tokens = torch.randint(1, model.decoder.vocab_size, (len(lengths),), generator=g)
            with torch.no_grad():
                want, state, _ = model.decoder.step(tokens, state, memory)
            got, o_state, _ = exported.step(tokens, o_state, o_memory)
            worst = max(worst, float((got - want).abs().max()))
            if not worst <= TOLERANCE:
                raise OnnxExportError(f"the exported graphs' logits differ from the model by {worst:.3g}")
    return worst


def export_paths(out: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The encoder's and the decoder step's file for ``out`` (``X.onnx`` -> ``X_encoder.onnx``,
    ``X_decoder_step.onnx``)."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix == ".onnx" else out
    return stem.with_name(stem.name + "_encoder.onnx"), stem.with_name(stem.name + "_decoder_step.onnx")
