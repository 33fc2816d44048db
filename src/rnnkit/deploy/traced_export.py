"""ONNX export of an app's model by tracing (``torch.export`` then ``torch.onnx.export``), for models
whose graph is more than a Recurrent stack (the forecaster, the classifier).

The recurrent layers are set to torch's own kernels where they run the cell (``backend="native"``:
ONNX's ``LSTM``/``GRU``/``RNN`` operators), else to the reference executor (a traced loop), on a copy
of the model; rnnkit's compiled kernels are operators no ONNX translation knows.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.deploy.onnx_export import OnnxExportError, _require_onnx
from rnnkit.errors import BackendUnavailable
from rnnkit.layers.recurrent import Recurrent

#: the oldest opset torch.onnx's exporter writes (it does not convert below it)
MIN_TRACED_OPSET = 18


def check_traced_opset(opset: int | None, what: str) -> None:
    """Refuse an opset torch.onnx does not write (it silently wrote 18 when 5, 14 or 17 was asked)."""
    newest = _require_onnx().defs.onnx_opset_version()
    if opset is not None and (isinstance(opset, bool) or not isinstance(opset, int)
                              or not MIN_TRACED_OPSET <= opset <= newest):
        raise OnnxExportError(f"unsupported ONNX opset {opset!r} for {what} (traced by torch.onnx): "
                              f"choose {MIN_TRACED_OPSET} to {newest}")


def traceable_copy(module: nn.Module, example: Sequence[Tensor],
                   backends: tuple[str, ...] = ("native", "reference")) -> nn.Module:
    """A copy of ``module`` whose Recurrent layers run the first of ``backends`` that runs them on
    ``example`` (by default torch's kernels where they can, else the reference loop)."""
    traced = copy.deepcopy(module)
    for backend in backends:
        for layer in traced.modules():
            if isinstance(layer, Recurrent):
                layer.backend = backend
        try:
            with torch.no_grad():
                traced(*example)
            return traced
        except BackendUnavailable:
            continue
    return traced


def traced_onnx(module: nn.Module, example: Sequence[Tensor], dynamic_shapes: Any, *, input_names: list[str],
                output_names: list[str], opset: int | None,
                backends: tuple[str, ...] = ("native", "reference")) -> Any:
    """The ONNX ``ModelProto`` of ``module(*example)`` traced with ``dynamic_shapes`` (the Recurrent
    layers on the first of ``backends`` that runs them); the written opset is checked against
    ``opset``."""
    traced = traceable_copy(module, example, backends)
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its notes on torchvision's operators and its progress lines
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", FutureWarning)  # pytree deprecations inside torch.export
            program = torch.export.export(traced, tuple(example), dynamic_shapes=dynamic_shapes)
            onnx_program = torch.onnx.export(program, dynamo=True, opset_version=opset, input_names=input_names,
                                             output_names=output_names, optimize=False, verbose=False)
    finally:
        quiet.setLevel(level)
    proto = onnx_program.model_proto
    written = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    if opset is not None and written != opset:  # never a file of another opset than the one asked for
        raise OnnxExportError(f"torch.onnx wrote opset {written}, not the requested {opset}")
    return proto


@contextlib.contextmanager
def distribution_checks_off():
    """torch.distributions' argument checks are data-dependent (no graph); off while tracing."""
    validate = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        torch.distributions.Distribution.set_default_validate_args(validate)
