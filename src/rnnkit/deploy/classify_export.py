"""ONNX export of a classification run (``rnnkit classify train`` / ``ClassifyModel.fit``).

The file maps raw values to class log-probabilities, the run's normalisation inside. Inputs ``x``
float32 (batch, length, dims): each case's values from its first step, zero-padded after its end,
and ``lengths`` int64 (batch,): its number of steps (1 to ``length``); output ``logprobs`` (batch,
classes), the log of the class probabilities (an ensemble's: the log of its members' mean
probabilities). The class names are in the file's metadata (``classes``, JSON), in the order of the
output's columns, and ``length`` too.

``length`` is fixed when the file is written (``length=``; the command's default is the longest
case the run was trained on): the trace unrolls the recurrence over time (torch.export specialises
torch's LSTM and the reference loop to one length), so a longer case needs a file of its length.
Traced by ``torch.onnx.export`` (:mod:`rnnkit.deploy.traced_export`): every architecture, the
Transformer baseline included.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.deploy.onnx_export import OnnxExportError, _require_onnx, onnx_session
from rnnkit.deploy.traced_export import check_traced_opset, traced_onnx
from rnnkit.io.atomic import write_bytes_atomic

#: the largest difference the written file may show against the model (log-probabilities)
TOLERANCE = 1e-4


class ClassifyGraph(nn.Module):
    """A classifier or ensemble: ``x (B, T, D)`` and ``lengths (B,)`` -> log-probabilities ``(B, classes)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        nets = list(getattr(self.model, "nets", [self.model]))
        logp = torch.stack([torch.log_softmax(net.logits(x, lengths, full=False), -1) for net in nets])
        return torch.logsumexp(logp, 0) - torch.log(torch.tensor(float(len(nets))))


def check_classifier(model: nn.Module) -> None:
    from rnnkit.apps.classify.ensemble import ClassifierEnsemble
    from rnnkit.apps.classify.model import Classifier

    if not isinstance(model, (Classifier, ClassifierEnsemble)):
        raise OnnxExportError(f"export_classifier takes the classify app's model, not {type(model).__name__}")
    if model.training and any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules()):
        raise OnnxExportError("the classifier is in train mode with dropout (random masks per call): "
                              "call .eval() before exporting")


def _n_dims(model: nn.Module) -> int:
    return int(model.mean.numel())


def example_input(model: nn.Module, batch: int, length: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Random raw values around the training data's scale (its mean and standard deviation), zero
    after random lengths from 1 to ``length`` (the first case full)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, length + 1, (batch,), generator=g)
    lengths[0] = length
    x = model.mean + model.std * torch.randn(batch, length, _n_dims(model), generator=g)
    return x * (torch.arange(length)[None, :, None] < lengths[:, None, None]), lengths


MAX_LENGTH = 100_000


def build_classifier_onnx(model: nn.Module, length: int, *, opset: int | None = None) -> Any:
    """The ONNX ``ModelProto`` of a classifier for cases of up to ``length`` steps (see the module
    docstring)."""
    check_classifier(model)
    check_traced_opset(opset, "a classifier")
    if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= MAX_LENGTH:
        raise OnnxExportError(f"length must be an integer from 1 to {MAX_LENGTH}, got {str(length)[:40]}")
    graph = ClassifyGraph(model).eval()
    batch = torch.export.Dim("batch")
    proto = traced_onnx(graph, example_input(model, 2, length), ({0: batch}, {0: batch}),
                        input_names=["x", "lengths"], output_names=["logprobs"], opset=opset,
                        backends=("reference",))  # torch's kernels take lengths as packed sequences: no graph
    _require_onnx().helper.set_model_props(proto, {"classes": json.dumps(list(model.classes)),
                                                   "length": str(length)})
    return proto


def export_classifier(model: nn.Module, path: str | os.PathLike[str], length: int, *, opset: int | None = None,
                      check: bool = True) -> Any:
    """Write a classifier for cases of up to ``length`` steps as an ONNX file at ``path`` (temporary
    file and rename); with ``check``, first compare the graph in onnxruntime with the model on batch
    sizes and case lengths the trace did not see."""
    proto = build_classifier_onnx(model, length, opset=opset)
    data = proto.SerializeToString()
    if check:
        verify(model, data, length)
    write_bytes_atomic(path, data)
    return proto


def verify(model: nn.Module, graph: str | os.PathLike[str] | bytes, length: int) -> float:
    """The largest difference between onnxruntime and the model (its own forward: each case at its
    length) over a few batches; :class:`OnnxExportError` above :data:`TOLERANCE`."""
    session = onnx_session(graph)
    worst = 0.0
    for batch in (1, 3, 5):
        x, lengths = example_input(model, batch, length, seed=batch)
        with torch.no_grad():
            want = model.eval()(x, lengths)
            if not hasattr(model, "nets"):  # a single classifier returns logits
                want = torch.log_softmax(want, -1)
        (got,) = session.run(None, {"x": x.numpy(), "lengths": lengths.numpy()})
        worst = max(worst, float((torch.from_numpy(got) - want).abs().max()))
        if not worst <= TOLERANCE:
            raise OnnxExportError(f"the exported graph's log-probabilities differ from the model by {worst:.3g}")
    return worst
