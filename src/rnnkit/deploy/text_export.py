"""ONNX export of the text app's recurrent language model (:class:`rnnkit.apps.text.model.RecurrentLM`).

The graph is the Recurrent stack's own graph (:func:`rnnkit.deploy.onnx_export.build_onnx_model`)
with the embedding lookup in front and the output layer behind it:

- sequence: ``ids`` int64 (time, batch), ``h0`` [, ``c0``] -> ``logits`` (time, batch, vocab),
  ``h_n`` [, ``c_n``];
- step (``step=True``): ``ids`` int64 (batch,) -> ``logits`` (batch, vocab) and the state: one token
  per call, what generation runs.

The tied output layer reads the embedding matrix through a ``Transpose`` (stored once). Only the
evaluation form is exported: the model's dropouts act in train mode only, so a model in train mode
with any dropout raises.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor

from rnnkit.deploy.onnx_export import OnnxExportError, _require_onnx, build_onnx_model, onnx_session

_DROPOUTS = ("embedding_dropout", "input_dropout", "output_dropout")


def _check_lm(model: torch.nn.Module) -> None:
    from rnnkit.apps.text.model import RecurrentLM

    if not isinstance(model, RecurrentLM):
        raise OnnxExportError(f"export_text_lm takes the text app's RecurrentLM, not {type(model).__name__} "
                              "(the Transformer language model is not exported)")
    if model.training and any(model.cfg[name] > 0 for name in _DROPOUTS):
        raise OnnxExportError("the language model is in train mode with dropout (random masks per call): "
                              "call .eval() before exporting")


def build_text_lm_onnx(model: torch.nn.Module, *, opset: int | None = None, step: bool = False) -> Any:
    """The ONNX ``ModelProto`` of a text ``RecurrentLM`` (see the module docstring)."""
    _check_lm(model)
    onnx = _require_onnx()
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    proto = build_onnx_model(model.rnn, opset=opset, step=step)
    graph = proto.graph
    rnn = model.rnn
    if rnn.batch_first:  # the app builds it time-major; a changed config would shift the axes
        raise OnnxExportError("the language model's Recurrent is batch_first; the text app builds it time-major")
    axes = ["batch"] if step else ["time", "batch"]
    vocab = model.embedding.num_embeddings

    def weight(name: str, t: Tensor) -> str:
        graph.initializer.append(numpy_helper.from_array(t.detach().to("cpu", torch.float32).contiguous().numpy(),
                                                         name))
        return name

    # front: ids -> embedding rows, written to the stack's input name
    inputs = [i for i in graph.input if i.name != "input"]
    del graph.input[:]
    graph.input.extend([helper.make_tensor_value_info("ids", onnx.TensorProto.INT64, axes), *inputs])
    embed = helper.make_node("Gather", [weight("lm_embedding", model.embedding.weight), "ids"], ["input"],
                             name="lm_embed", axis=0)
    nodes = [embed, *graph.node]
    # back: the stack's output -> (projection) -> decoder -> logits
    x = "output"
    if model.proj is not None:
        nodes.append(helper.make_node("MatMul", [x, weight("lm_proj_wt", model.proj.weight.t())], ["lm_proj_mm"],
                                      name="lm_proj_mm"))
        nodes.append(helper.make_node("Add", ["lm_proj_mm", weight("lm_proj_b", model.proj.bias)], ["lm_proj"],
                                      name="lm_proj_add"))
        x = "lm_proj"
    if model.decoder.weight is model.embedding.weight:  # tied: one copy of the matrix
        nodes.append(helper.make_node("Transpose", ["lm_embedding"], ["lm_decoder_wt"], name="lm_tied", perm=[1, 0]))
        decoder_wt = "lm_decoder_wt"
    else:
        decoder_wt = weight("lm_decoder_wt", model.decoder.weight.t())
    nodes.append(helper.make_node("MatMul", [x, decoder_wt], ["lm_logits_mm"], name="lm_decoder_mm"))
    nodes.append(helper.make_node("Add", ["lm_logits_mm", weight("lm_decoder_b", model.decoder.bias)], ["logits"],
                                  name="lm_decoder_add"))
    del graph.node[:]
    graph.node.extend(nodes)
    outputs = [o for o in graph.output if o.name != "output"]
    del graph.output[:]
    graph.output.extend([helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [*axes, vocab]), *outputs])
    graph.name = f"rnnkit_text_lm{'_step' if step else ''}"
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_text_lm(model: torch.nn.Module, path: str | os.PathLike[str], *, example_ids: Tensor | None = None,
                   opset: int | None = None, step: bool = False) -> Any:
    """Write a text ``RecurrentLM`` as an ONNX file at ``path``; return the ``ModelProto``.

    ``example_ids`` (int64, (T, B), or (B,) for the step graph): if given, the written file is run in
    onnxruntime on it from a zero state and compared with the model; a difference above 1e-4 raises."""
    proto = build_text_lm_onnx(model, opset=opset, step=step)
    _require_onnx().save(proto, os.fspath(path))
    if example_ids is not None:
        _verify(model, os.fspath(path), example_ids, step)
    return proto


def _verify(model: Any, path: str, ids: Tensor, step: bool) -> None:
    if ids.dim() != (1 if step else 2):
        raise OnnxExportError(f"example_ids must be {'(B,)' if step else '(T, B)'}, got shape {tuple(ids.shape)}")
    batch = ids.shape[0] if step else ids.shape[1]
    rnn = model.rnn
    state = tuple(torch.zeros(rnn.num_layers * rnn.num_directions, batch, n) for n in rnn._state_sizes)
    with torch.no_grad():
        logits, final, _ = model(ids[None] if step else ids, state if len(state) > 1 else state[0])
    if step:
        logits = logits[0]
    finals = final if isinstance(final, tuple) else (final,)
    feeds = {"ids": ids.to(torch.int64).numpy(), **{k: s.numpy() for k, s in zip(("h0", "c0"), state, strict=False)}}
    got = onnx_session(path).run(None, feeds)
    for name, a, b in zip(("logits", "h_n", "c_n"), got, (logits, *finals), strict=False):
        err = float((torch.from_numpy(a) - b).abs().max())
        if err > 1e-4:
            raise OnnxExportError(f"the exported graph's {name} differs from the model by {err:.3g} on example_ids")
