"""Conversion between rnnkit's drop-ins and torch.nn modules (weights shared by value, not copied
by reference): ``rnnkit.from_torch(module)`` and ``module.to_torch()``."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from rnnkit.cells.registry import option_defaults, options_of
from rnnkit.layers.torch_cells import GRUCell, LSTMCell, RNNCell, _CellModule
from rnnkit.layers.torch_rnn import GRU, LSTM, RNN, _TorchCompatible

# cell options torch.nn also has (any other set option changes the equations: no equivalent)
_TORCH_CELL_OPTIONS = ("proj_size",)
# training-only regularisers: dropped by to_torch(), with a warning
_TRAIN_OPTIONS = ("variational_dropout", "recurrent_dropout", "weight_drop")


def _factory(module: nn.Module) -> dict:
    p = next(module.parameters())
    return {"device": p.device, "dtype": p.dtype}


def _stack_options(module: nn.Module, factory: dict) -> dict:
    """The constructor options torch.nn's stacks and rnnkit's drop-ins share, read off either one."""
    return dict(num_layers=module.num_layers, bias=module.bias, batch_first=module.batch_first,
                dropout=module.dropout, bidirectional=module.bidirectional, **factory)


def from_torch(module: nn.Module) -> nn.Module:
    """The rnnkit drop-in equivalent of a torch.nn RNN/LSTM/GRU or cell, with the same weights."""
    if isinstance(module, (_TorchCompatible, _CellModule)):
        return module
    f = _factory(module)
    if isinstance(module, nn.RNNBase):
        common = _stack_options(module, f)
        if isinstance(module, nn.LSTM):
            ours: nn.Module = LSTM(module.input_size, module.hidden_size,
                                   proj_size=module.proj_size, **common)
        elif isinstance(module, nn.GRU):
            ours = GRU(module.input_size, module.hidden_size, **common)
        elif isinstance(module, nn.RNN):
            ours = RNN(module.input_size, module.hidden_size, nonlinearity=module.nonlinearity,
                       **common)
        else:
            raise TypeError(f"from_torch: unsupported module {type(module).__name__}")
    elif isinstance(module, nn.LSTMCell):
        ours = LSTMCell(module.input_size, module.hidden_size, module.bias, **f)
    elif isinstance(module, nn.GRUCell):
        ours = GRUCell(module.input_size, module.hidden_size, module.bias, **f)
    elif isinstance(module, nn.RNNCell):
        ours = RNNCell(module.input_size, module.hidden_size, module.bias, module.nonlinearity, **f)
    else:
        raise TypeError(f"from_torch: unsupported module {type(module).__name__}")
    ours.load_state_dict(module.state_dict())
    ours.train(module.training)
    return ours


def to_torch(module: nn.Module) -> nn.Module:
    """The torch.nn module with the same weights; refuses options torch.nn cannot compute."""
    spec = module.cell if isinstance(module, _TorchCompatible) else getattr(module, "spec", None)
    if spec is None:
        raise TypeError(f"to_torch: unsupported module {type(module).__name__}")
    defaults = option_defaults(spec.name)
    blocking = [name for name, value in options_of(spec).items()
                if name not in _TORCH_CELL_OPTIONS and value != defaults[name]]
    if isinstance(module, _TorchCompatible):
        if any(module.zoneout):
            blocking.append("zoneout")
        if module.residual:
            blocking.append("residual")
    if blocking:
        raise ValueError(
            f"to_torch: torch.nn has no equivalent of {', '.join(blocking)}; "
            "the converted module would compute something else"
        )
    f = _factory(module)
    if isinstance(module, _TorchCompatible):
        dropped = [name for name in _TRAIN_OPTIONS if getattr(module, name)]
        if dropped:
            warnings.warn(f"to_torch: dropping training-only {', '.join(dropped)}", stacklevel=2)
        common = _stack_options(module, f)
        if isinstance(module, LSTM):
            theirs: nn.Module = nn.LSTM(module.input_size, module.hidden_size,
                                        proj_size=module.proj_size, **common)
        elif isinstance(module, GRU):
            theirs = nn.GRU(module.input_size, module.hidden_size, **common)
        else:
            theirs = nn.RNN(module.input_size, module.hidden_size,
                            nonlinearity=module.nonlinearity, **common)
    elif isinstance(module, LSTMCell):
        theirs = nn.LSTMCell(module.input_size, module.hidden_size, module.bias, **f)
    elif isinstance(module, GRUCell):
        theirs = nn.GRUCell(module.input_size, module.hidden_size, module.bias, **f)
    else:
        theirs = nn.RNNCell(module.input_size, module.hidden_size, module.bias,
                            module.nonlinearity, **f)
    with torch.no_grad():
        theirs.load_state_dict(module.state_dict())
    theirs.train(module.training)
    return theirs
