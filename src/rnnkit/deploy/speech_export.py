"""ONNX export of the speech app's recurrent CTC model (:class:`rnnkit.apps.speech.model.RecurrentCTC`):
audio samples in, CTC log-probabilities out, the features computed inside the graph.

- sequence graph (offline or streaming model): ``samples`` float (batch, n) at the model's sample
  rate, full scale 1, n >= ``n_fft`` -> ``logprobs`` (batch, frames, vocab), vocab = blank +
  the alphabet (``alphabet`` in the file's metadata), frames = the model's output frames of n samples.
  The initial state is zero inside the graph.
- chunk graph (``step=True``, a streaming model): one output frame per call from ``4 * hop`` new
  ``samples`` (640 at 16 kHz: 40 ms), with the stream's state in and out: ``pending`` (batch,
  n_fft - hop) samples not yet framed, ``conv1_state``/``conv2_state`` (the rows the causal front
  end has not consumed), ``h0`` [, ``c0``] -> ``logprobs`` (batch, 1, vocab), ``pending_out``,
  ``conv1_state_out``, ``conv2_state_out``, ``h_n`` [, ``c_n``]. A stream starts with ``pending`` =
  its first n_fft - hop samples and zeros for the other states; the frames it gives equal the
  sequence graph's (and the model's whole-utterance forward) for every frame its audio covers.

The features are the app's (:class:`rnnkit.apps.speech.features.LogMel`): frames of ``n_fft``
samples every ``hop``, periodic Hann window, power spectrum, HTK-mel filters, ``log(mel + 1e-6)``;
the spectrum is one ``Conv`` with the windowed DFT basis as its kernel (stride ``hop``), so the graph
needs no STFT operator. Then the normalisation (global statistics, or the utterance's own in the
sequence graph), the two stride-2 convolutions, the Recurrent stack (``build_onnx_model``: ONNX's
own LSTM/GRU/RNN or a Scan) and the output layer. The Transformer model is not exported; only the
evaluation form is (dropout acts in train mode).
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from torch import Tensor

from rnnkit.deploy.onnx_export import OnnxExportError, _require_onnx, build_onnx_model, onnx_session
from rnnkit.deploy.onnx_nodes import GraphNodes
from rnnkit.io.atomic import write_bytes_atomic

#: feature frames per call of the chunk graph (the front end subsamples time by 4)
CHUNK_FRAMES = 4


def _check_model(model: torch.nn.Module, step: bool) -> None:
    from rnnkit.apps.speech.model import RecurrentCTC

    if not isinstance(model, RecurrentCTC):
        raise OnnxExportError(f"export_speech takes the speech app's RecurrentCTC, not {type(model).__name__} "
                              "(the Transformer model is not exported)")
    if model.training and model.dropout_p > 0:
        raise OnnxExportError("the speech model is in train mode with dropout (random masks per call): "
                              "call .eval() before exporting")
    if step and not model.streaming:
        raise OnnxExportError("the chunk graph (--step) needs a streaming model (speech train --mode streaming); "
                              "an offline model exports its sequence graph")


def _dft_kernel(n_fft: int, window: Tensor) -> Tensor:
    """``(2F, 1, n_fft)``: the real then the imaginary parts of the onesided DFT of a windowed frame."""
    n = torch.arange(n_fft, dtype=torch.float64)
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
    angle = 2 * math.pi * k[:, None] * n[None, :] / n_fft
    w = window.to(torch.float64)[None, :]
    return torch.cat([torch.cos(angle) * w, -torch.sin(angle) * w]).unsqueeze(1)


def _log_mel(g: GraphNodes, model: Any, samples: str) -> str:
    """``samples`` (B, n) -> log-mel ``(B, frames, n_mels)``, the app's LogMel."""
    fe = model.featurizer
    n_freq = fe.n_fft // 2 + 1
    x = g.add("Unsqueeze", [samples, g.const("axis1", [1])], "samples_1")
    spec = g.add("Conv", [x, g.const("dft_kernel", _dft_kernel(fe.n_fft, fe.window))], "spectrum",
                 strides=[fe.hop])  # (B, 2F, frames)
    g.nodes.append(g.helper.make_node("Split", [spec, g.const("re_im", [n_freq, n_freq])], ["re", "im"],
                                      name="split_re_im", axis=1))
    power = g.add("Add", [g.add("Mul", ["re", "re"], "re2"), g.add("Mul", ["im", "im"], "im2")], "power")
    frames = g.add("Transpose", [power], "power_t", perm=[0, 2, 1])
    mel = g.add("MatMul", [frames, g.const("fbank", fe.fbank)], "mel")
    from rnnkit.apps.speech.features import LOG_FLOOR

    return g.add("Log", [g.add("Add", [mel, g.const("log_floor", float(LOG_FLOOR))], "mel_floor")], "log_mel")


def _normalise(g: GraphNodes, model: Any, feats: str, opset: int) -> str:
    if model.norm == "global":
        centred = g.add("Sub", [feats, g.const("feat_mean", model.feat_mean)], "feats_centred")
        return g.add("Div", [centred, g.const("feat_std", model.feat_std)], "feats_norm")

    def time_mean(x: str, out: str) -> str:  # ReduceMean's axes: an input from opset 18
        if opset >= 18:
            return g.add("ReduceMean", [x, g.const(f"{out}_axes", [1])], out, keepdims=1)
        return g.add("ReduceMean", [x], out, axes=[1], keepdims=1)

    centred = g.add("Sub", [feats, time_mean(feats, "utt_mean")], "feats_centred")
    var = time_mean(g.add("Mul", [centred, centred], "centred2"), "utt_var")
    std = g.add("Sqrt", [g.add("Add", [var, g.const("var_eps", 1e-5)], "var_eps_sum")], "utt_std")
    return g.add("Div", [centred, std], "feats_norm")


def _project_into_input(g: GraphNodes, frontend: Any, x: str) -> str:
    """(B, C, T', F2) -> (B, T', C*F2) -> the front end's linear layer: the Recurrent stack's ``input``."""
    t = g.add("Transpose", [x], "frontend_t", perm=[0, 2, 1, 3])
    flat = g.add("Reshape", [t, g.const("frontend_shape", [0, 0, frontend.linear.in_features])], "frontend_flat")
    mm = g.add("MatMul", [flat, g.const("frontend_wt", frontend.linear.weight.t())], "frontend_mm")
    return g.add("Add", [mm, g.const("frontend_b", frontend.linear.bias)], "input")


def build_speech_onnx(model: torch.nn.Module, *, opset: int | None = None, step: bool = False) -> Any:
    """The ONNX ``ModelProto`` of a speech ``RecurrentCTC`` (see the module docstring)."""
    _check_model(model, step)
    onnx = _require_onnx()
    helper, F = onnx.helper, onnx.TensorProto.FLOAT
    rnn = model.rnn
    proto = build_onnx_model(rnn, opset=opset)
    graph = proto.graph
    version = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    g = GraphNodes(onnx)
    fe, frontend = model.featurizer, model.frontend
    n_mels, channels = model.n_mels, frontend.conv1.out_channels
    f1 = (n_mels - 1) // 2 + 1
    V = model.vocab_size
    states = [i for i in graph.input if i.name in ("h0", "c0")]
    if not step:
        feats = _normalise(g, model, _log_mel(g, model, "samples"), version)
        time_pad = [2, 0] if frontend.causal else [1, 1]
        pads1 = g.const("pads_conv", [0, 0, time_pad[0], 1, 0, 0, time_pad[1], 1])
        x = g.add("Unsqueeze", [feats, "axis1"], "feats_1")
        y1 = g.conv(g.add("Pad", [x, pads1], "conv1_in"), frontend.conv1, "conv1")
        y2 = g.conv(g.add("Pad", [y1, pads1], "conv2_in"), frontend.conv2, "conv2")
        _project_into_input(g, frontend, y2)
        # zero initial state inside the graph: (layers x directions, batch, size)
        batch = g.add("Slice", [g.add("Shape", ["samples"], "samples_shape"), g.const("zero", [0]),
                                g.const("one", [1])], "batch_size")
        for info in states:
            size = info.type.tensor_type.shape.dim[2].dim_value
            shape = g.add("Concat", [g.const(f"{info.name}_layers", [rnn.num_layers * rnn.num_directions]), batch,
                                     g.const(f"{info.name}_width", [size])], f"{info.name}_shape", axis=0)
            g.nodes.append(helper.make_node("ConstantOfShape", [shape], [info.name], name=f"{info.name}_zeros",
                                            value=helper.make_tensor("zero_f", F, [1], [0.0])))
        inputs = [helper.make_tensor_value_info("samples", F, ["batch", "samples"])]
        outputs = []
    else:
        chunk, pending = CHUNK_FRAMES * fe.hop, fe.n_fft - fe.hop
        buf = g.add("Concat", ["pending", "samples"], "audio", axis=1)
        g.add("Slice", [buf, g.const("pending_start", [chunk]), g.const("pending_end", [chunk + pending]),
                        "axis1"], "pending_out")
        feats = _normalise(g, model, _log_mel(g, model, buf), version)  # (B, 4, n_mels)
        pad_bins = g.const("pads_bins", [0, 0, 0, 1, 0, 0, 0, 1])
        x = g.add("Pad", [g.add("Unsqueeze", [feats, "axis1"], "feats_1"), pad_bins], "feats_padded")
        rows1 = g.add("Concat", ["conv1_state", x], "conv1_rows", axis=2)  # (B, 1, 6, n_mels + 2)
        y1 = g.conv(rows1, frontend.conv1, "conv1")  # 2 rows
        g.add("Slice", [rows1, g.const("rows1_from", [CHUNK_FRAMES]), g.const("rows1_to", [CHUNK_FRAMES + 2]),
                        g.const("axis2", [2])], "conv1_state_out")
        rows2 = g.add("Concat", ["conv2_state", g.add("Pad", [y1, pad_bins], "conv1_padded")], "conv2_rows", axis=2)
        y2 = g.conv(rows2, frontend.conv2, "conv2")  # 1 row
        g.add("Slice", [rows2, g.const("rows2_from", [2]), g.const("rows2_to", [4]), "axis2"], "conv2_state_out")
        _project_into_input(g, frontend, y2)
        inputs = [helper.make_tensor_value_info("samples", F, ["batch", chunk]),
                  helper.make_tensor_value_info("pending", F, ["batch", pending]),
                  helper.make_tensor_value_info("conv1_state", F, ["batch", 1, 2, n_mels + 2]),
                  helper.make_tensor_value_info("conv2_state", F, ["batch", channels, 2, f1 + 2]), *states]
        outputs = [helper.make_tensor_value_info("pending_out", F, ["batch", pending]),
                   helper.make_tensor_value_info("conv1_state_out", F, ["batch", 1, 2, n_mels + 2]),
                   helper.make_tensor_value_info("conv2_state_out", F, ["batch", channels, 2, f1 + 2])]
        outputs += [o for o in graph.output if o.name in ("h_n", "c_n")]
    front = len(g.nodes)
    g.add("LogSoftmax", [g.linear("output", model.out, "out_linear")], "logprobs", axis=-1)
    nodes = [*g.nodes[:front], *graph.node, *g.nodes[front:]]  # the front end, the stack, the output layer
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(g.initializers)
    del graph.input[:]
    graph.input.extend(inputs)
    del graph.output[:]
    graph.output.extend([helper.make_tensor_value_info("logprobs", F, ["batch", 1 if step else "frames", V]),
                         *outputs])
    graph.name = f"rnnkit_speech_ctc{'_chunk' if step else ''}"
    helper.set_model_props(proto, {"alphabet": model.alphabet, "blank": "0", "sample_rate": str(model.sample_rate),
                                   "chunk_samples": str(CHUNK_FRAMES * fe.hop), "n_fft": str(fe.n_fft),
                                   "hop": str(fe.hop)})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_speech(model: torch.nn.Module, path: str | os.PathLike[str], *, example_samples: Tensor | None = None,
                  opset: int | None = None, step: bool = False, tolerance: float = 1e-4) -> Any:
    """Write a speech ``RecurrentCTC`` as an ONNX file at ``path`` (temporary file and rename); return
    the ``ModelProto``.

    ``example_samples`` (float, (B, n)): if given, the graph is run in onnxruntime on it (the chunk
    graph: over the whole chunks it holds) and compared with the model's whole-utterance forward
    before anything is written; a log-probability differing by more than ``tolerance`` raises."""
    proto = build_speech_onnx(model, opset=opset, step=step)
    data = proto.SerializeToString()
    if example_samples is not None:
        got, want = run_exported(model, data, example_samples, step)
        err = float((got - want).abs().max())
        if err > tolerance:
            raise OnnxExportError(f"the exported graph's log-probabilities differ from the model by {err:.3g}")
    write_bytes_atomic(path, data)
    return proto


def model_logprobs(model: Any, samples: Tensor) -> Tensor:
    """The model's whole-utterance forward: ``(B, n)`` samples -> ``(B, frames, vocab)``."""
    with torch.no_grad():
        feats = model.featurizer(samples.to(torch.float32))
        out, _ = model(feats, torch.full((samples.shape[0],), feats.shape[1], dtype=torch.int64))
    return out


def stream_chunks(session: Any, model: Any, samples: Tensor) -> Tensor:
    """The chunk graph run over ``samples`` (B, n) as a stream: the first ``n_fft - hop`` samples are
    the initial ``pending``, then one call per whole chunk (a shorter tail is left out)."""
    fe = model.featurizer
    chunk, first = CHUNK_FRAMES * fe.hop, fe.n_fft - fe.hop
    B = samples.shape[0]
    f1 = (model.n_mels - 1) // 2 + 1
    rnn = model.rnn
    feeds = {"pending": samples[:, :first].numpy(),
             "conv1_state": torch.zeros(B, 1, 2, model.n_mels + 2).numpy(),
             "conv2_state": torch.zeros(B, model.frontend.conv1.out_channels, 2, f1 + 2).numpy()}
    for name, size in zip(("h0", "c0"), rnn._state_sizes, strict=False):
        feeds[name] = torch.zeros(rnn.num_layers, B, size).numpy()
    names = [o.name for o in session.get_outputs()]
    frames = []
    for start in range(first, samples.shape[1] - chunk + 1, chunk):
        feeds["samples"] = samples[:, start:start + chunk].contiguous().numpy()
        out = dict(zip(names, session.run(None, feeds), strict=True))
        frames.append(torch.from_numpy(out["logprobs"]))
        for state in ("pending", "conv1_state", "conv2_state"):
            feeds[state] = out[f"{state}_out"]
        feeds["h0"] = out["h_n"]
        if "c0" in feeds:
            feeds["c0"] = out["c_n"]
    return torch.cat(frames, dim=1) if frames else torch.zeros(B, 0, model.vocab_size)


def run_exported(model: Any, graph: str | bytes, samples: Tensor, step: bool) -> tuple[Tensor, Tensor]:
    """(onnxruntime's log-probabilities, the model's) on ``samples`` (B, n), ``graph`` a file or its
    bytes; for the chunk graph the frames its whole chunks give."""
    if samples.dim() != 2:
        raise OnnxExportError(f"example_samples must be (batch, samples), got shape {tuple(samples.shape)}")
    if samples.shape[1] < model.featurizer.n_fft:
        raise OnnxExportError(f"example_samples needs at least n_fft = {model.featurizer.n_fft} samples")
    samples = samples.to(torch.float32)
    want = model_logprobs(model, samples)
    session = onnx_session(graph)
    if step:
        got = stream_chunks(session, model, samples)
        return got, want[:, : got.shape[1]]
    return torch.from_numpy(session.run(None, {"samples": samples.numpy()})[0]), want
