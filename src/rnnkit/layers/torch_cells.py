"""Drop-in replacements for torch.nn.RNNCell, torch.nn.LSTMCell and torch.nn.GRUCell.

One time step of a cell spec (:mod:`rnnkit.cells`), with torch.nn's constructor, parameter names
(``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``), shapes (batched and unbatched), ``repr`` and
error messages. Extra cell options (layer norm, peepholes, initialisation) are keyword-only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import _VF, Tensor, nn

from rnnkit.cells.base import CellSpec, InitOptions, Params
from rnnkit.cells.registry import make_cell, options_repr
from rnnkit.layers.graph_capture import refuse_scripting


class _CellModule(nn.Module):
    """Shared machinery: parameters from the spec, checks, batched/unbatched handling."""

    _torch_name: str

    def __init__(
        self, spec: CellSpec, init: InitOptions, device: Any = None, dtype: Any = None
    ) -> None:
        super().__init__()
        self.spec = spec
        self.input_size = spec.input_size
        self.hidden_size = spec.hidden_size
        self.bias = spec.bias
        self.init_options = init
        factory = {"device": device, "dtype": dtype}
        for name, shape in spec.param_shapes().items():
            setattr(self, name, nn.Parameter(torch.empty(shape, **factory)))
        if not spec.bias:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def params(self) -> Params:
        return {name: getattr(self, name) for name in self.spec.param_shapes()}

    def reset_parameters(self) -> None:
        self.spec.reset_parameters(self.params(), self.init_options)

    def __prepare_scriptable__(self):  # torch.jit.script calls this on every module first
        refuse_scripting(self)

    def to_torch(self) -> nn.Module:
        """The torch.nn cell with the same weights (:func:`rnnkit.layers.conversion.to_torch`)."""
        from rnnkit.layers.conversion import to_torch  # conversion imports this module

        return to_torch(self)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s + options_repr(self.spec, self.init_options)

    def _check_dims(self, input: Tensor, hx: tuple[Tensor, ...] | None, names: list[str]) -> bool:
        if input.dim() not in (1, 2):
            raise ValueError(
                f"{self._torch_name}: Expected input to be 1D or 2D, got {input.dim()}D instead"
            )
        if hx is not None:
            for name, h in zip(names, hx, strict=False):
                if h.dim() not in (1, 2):
                    raise ValueError(
                        f"{self._torch_name}: Expected {name} to be 1D or 2D, got {h.dim()}D instead"
                    )
        return input.dim() == 2

    def _check_sizes(self, input: Tensor, hx: tuple[Tensor, ...] | None) -> None:
        if input.size(1) != self.input_size:
            raise RuntimeError(
                f"input has inconsistent input_size: got {input.size(1)} expected {self.input_size}"
            )
        for k, (h, size) in enumerate(zip(hx or (), self.spec.state_sizes(), strict=False)):
            if input.size(0) != h.size(0):
                raise RuntimeError(
                    f"Input batch size {input.size(0)} doesn't match hidden{k} batch size {h.size(0)}"
                )
            if h.size(1) != size:
                raise RuntimeError(
                    f"hidden{k} has inconsistent hidden_size: got {h.size(1)}, expected {size}"
                )

    def _step(self, input: Tensor, hx: tuple[Tensor, ...] | None, names: list[str]):
        batched = self._check_dims(input, hx, names)
        if not batched:
            input = input.unsqueeze(0)
        if hx is None:
            state = self.spec.initial_state(input.size(0), device=input.device, dtype=input.dtype)
            self._check_sizes(input, None)
        else:
            state = hx if batched else tuple(h.unsqueeze(0) for h in hx)
            self._check_sizes(input, state)
        params = self.params()
        if torch.is_autocast_enabled(input.device.type) and self.spec.unsupported_by_torch() is None:
            # autocast casts op by op: torch's cell kernel gives torch.nn's dtypes and rounding
            new = self._torch_cell(input, state, params)
        else:
            new = self.spec.step(params, self.spec.project_input(params, input), state)
        return new if batched else tuple(s.squeeze(0) for s in new)

    def _torch_cell(self, input: Tensor, state: tuple[Tensor, ...], params: Params) -> tuple[Tensor, ...]:
        """One step through the ``torch._VF`` cell function torch.nn's cell calls."""
        weights = (params["weight_ih"], params["weight_hh"], params.get("bias_ih"), params.get("bias_hh"))
        name = self.spec.name
        if name == "lstm":
            return tuple(_VF.lstm_cell(input, state, *weights))
        kernel = {"gru": _VF.gru_cell, "rnn_tanh": _VF.rnn_tanh_cell, "rnn_relu": _VF.rnn_relu_cell}[name]
        return (kernel(input, state[0], *weights),)


class _SingleStateCellModule(_CellModule):
    """A drop-in cell whose state is one tensor: ``forward(input, hx) -> h'`` as torch.nn's."""

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        return self._step(input, None if hx is None else (hx,), ["hidden"])[0]


class RNNCell(_SingleStateCellModule):
    """Elman cell, a drop-in for :class:`torch.nn.RNNCell`."""

    _torch_name = "RNNCell"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device: Any = None,
        dtype: Any = None,
        *,
        init: str = "torch",
        chrono_tmax: float = 1000.0,
    ) -> None:
        spec = make_cell("rnn_tanh" if nonlinearity == "tanh" else "rnn_relu", input_size,
                         hidden_size, bias) if nonlinearity in ("tanh", "relu") else None
        if spec is None:
            raise ValueError(f"Unknown nonlinearity: {nonlinearity}")
        self.nonlinearity = nonlinearity
        super().__init__(spec, InitOptions(init, None, chrono_tmax), device, dtype)


class GRUCell(_SingleStateCellModule):
    """GRU cell, a drop-in for :class:`torch.nn.GRUCell` (optional ``layer_norm``)."""

    _torch_name = "GRUCell"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        layer_norm: bool = False,
        init: str = "torch",
        chrono_tmax: float = 1000.0,
    ) -> None:
        spec = make_cell("gru", input_size, hidden_size, bias, layer_norm=layer_norm)
        super().__init__(spec, InitOptions(init, None, chrono_tmax), device, dtype)


class LSTMCell(_CellModule):
    """LSTM cell, a drop-in for :class:`torch.nn.LSTMCell` (optional ``peephole``, ``layer_norm``)."""

    _torch_name = "LSTMCell"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        peephole: bool = False,
        layer_norm: bool = False,
        forget_bias: float | None = None,
        init: str = "torch",
        chrono_tmax: float = 1000.0,
    ) -> None:
        spec = make_cell(
            "lstm", input_size, hidden_size, bias, peephole=peephole, layer_norm=layer_norm
        )
        super().__init__(spec, InitOptions(init, forget_bias, chrono_tmax), device, dtype)

    def forward(
        self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        h, c = self._step(input, hx, ["hx[0]", "hx[1]"])
        return h, c
