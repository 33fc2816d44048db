"""``rnnkit.quantize_dynamic``: dynamic int8 quantization of models that hold rnnkit's layers, and
``rnnkit.quantize_step``: rnnkit's own int8 streaming step.

torch's ``torch.ao.quantization.quantize_dynamic`` picks modules by type (``type(m) in {nn.LSTM,
...}``), so it silently leaves rnnkit's drop-ins in float32: they are no torch.nn subclasses
(subclassing would hand them to torch.nn's own forward, flat-weight and cuDNN machinery). This
function first converts each drop-in that torch can quantize to its torch.nn twin (same weights,
:func:`rnnkit.to_torch`), then calls torch's function: the result is what torch gives for the
equivalent torch.nn model. Layers torch.nn cannot express (layer norm, peepholes, zoneout, residual,
``Recurrent``'s other cells) and LSTMs with ``proj_size`` (torch quantizes them into a module whose
forward fails) stay in floating point, with a warning naming each one.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable

import torch
from torch import nn

from rnnkit.executors.native import torch_mode
from rnnkit.executors.streaming import STEP_PRECISIONS
from rnnkit.layers.conversion import to_torch
from rnnkit.layers.recurrent import Recurrent
from rnnkit.layers.torch_cells import GRUCell, LSTMCell, RNNCell, _CellModule
from rnnkit.layers.torch_rnn import GRU, LSTM, RNN, _TorchCompatible

#: what torch quantizes dynamically when given no types (torch's own default set)
DEFAULT_TYPES: frozenset[type[nn.Module]] = frozenset(
    {nn.Linear, nn.LSTM, nn.GRU, nn.LSTMCell, nn.RNNCell, nn.GRUCell}
)
_TWINS: dict[type[nn.Module], type[nn.Module]] = {
    LSTM: nn.LSTM, GRU: nn.GRU, RNN: nn.RNN, LSTMCell: nn.LSTMCell, GRUCell: nn.GRUCell,
    RNNCell: nn.RNNCell,
}
_RECURRENT_TWINS = {"LSTM": nn.LSTM, "GRU": nn.GRU, "RNN_TANH": nn.RNN, "RNN_RELU": nn.RNN}


def _torch_type(module: nn.Module) -> type[nn.Module] | None:
    """The torch.nn type an rnnkit layer stands for (None for cells torch.nn has not)."""
    if isinstance(module, Recurrent) and not isinstance(module, _TorchCompatible):
        return _RECURRENT_TWINS.get(torch_mode(module.cell))
    return _TWINS.get(type(module))


def _requested(types: Iterable[type[nn.Module]]) -> set[type[nn.Module]]:
    """torch.nn types asked for, with rnnkit's drop-in classes read as their torch.nn twins."""
    return {_TWINS.get(t, t) for t in types}


def quantize_dynamic(
    model: nn.Module,
    qconfig_spec: Iterable[type[nn.Module]] | None = None,
    dtype: torch.dtype = torch.qint8,
    inplace: bool = False,
) -> nn.Module:
    """``torch.ao.quantization.quantize_dynamic`` that also quantizes rnnkit's drop-ins.

    Args:
        model: any module; rnnkit layers inside it are found by ``named_modules``.
        qconfig_spec: module types to quantize (torch.nn types or rnnkit's drop-in classes, which
            stand for their torch.nn twins); None: torch's default (Linear, LSTM, GRU, cells).
        dtype: ``torch.qint8`` or ``torch.float16``, as torch.
        inplace: convert ``model`` itself rather than a copy.

    Returns the quantized model: each convertible drop-in replaced by torch's dynamically quantized
    module, exactly what torch gives for the torch.nn model with the same weights. Warns (UserWarning)
    for each rnnkit layer of a requested type that stays in floating point, and why.
    """
    if isinstance(qconfig_spec, dict):
        raise TypeError("rnnkit.quantize_dynamic takes a set of module types (or None), not a dict")
    types = set(DEFAULT_TYPES) if qconfig_spec is None else _requested(qconfig_spec)
    if not inplace:
        model = copy.deepcopy(model)
    left: list[str] = []
    for name, sub in list(model.named_modules()):
        if not isinstance(sub, (Recurrent, _CellModule)) or _torch_type(sub) not in types:
            continue
        if getattr(sub, "proj_size", 0):  # torch converts it, then its forward fails (packB rows)
            left.append(f"{name or type(sub).__name__}: torch's quantized LSTM has no proj_size")
            continue
        try:
            twin = to_torch(sub)
        except (TypeError, ValueError) as e:
            left.append(f"{name or type(sub).__name__}: {e}")
            continue
        if name:
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, twin)
        else:
            model = twin
    if left:
        warnings.warn(
            "rnnkit.quantize_dynamic left these layers in floating point (torch's dynamic "
            "quantization has no equivalent): " + "; ".join(left),
            stacklevel=2,
        )
    return torch.ao.quantization.quantize_dynamic(model, types, dtype=dtype, inplace=True)



def quantize_step(module: nn.Module, precision: str = "int8") -> nn.Module:
    """Set the streaming ``step()`` of every :class:`~rnnkit.Recurrent` inside ``module`` (``module``
    itself included) to ``precision``, in place, and return ``module``.

    ``"int8"``: each step's projections use int8 copies of ``W_ih`` and ``W_hh`` (per-row symmetric
    scales, quantized when the step is first taken and again after any change to a parameter) and
    the step's activations quantized per row at run time, summed in int32 (AVX512-VNNI where the
    CPU has it); biases, layer norms, gates and the state stay float32. Dynamic quantization as
    torch's ``quantize_dynamic``, for every cell the fused kernels run (layer norm, peepholes,
    projection, GRU, Elman, IndRNN), not only torch.nn's. It runs on the C++ step only (CPU,
    float32, no autograd); a step that cannot run there raises ``ValueError`` rather than running
    in float. ``forward`` over a sequence is unchanged. ``"float"`` restores the module's own
    precision.
    """
    if precision not in STEP_PRECISIONS:
        raise ValueError(f"precision must be one of {STEP_PRECISIONS}, got {precision!r}")
    layers = [m for m in module.modules() if isinstance(m, Recurrent)]
    if not layers:
        raise ValueError("quantize_step: no rnnkit recurrent layers in this module")
    for layer in layers:
        layer.step_precision = precision
    return module
