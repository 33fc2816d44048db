"""Drop-in replacements for torch.nn.RNN, torch.nn.LSTM and torch.nn.GRU.

Constructor (positional order included), ``forward(input, hx=None)``, shapes, ``state_dict`` keys,
``repr`` and error messages match torch.nn, so ``ours.load_state_dict(theirs.state_dict())`` works both
ways. rnnkit's extra options are keyword-only and off by default. ``backend="auto"`` runs a plain LSTM
on torch's own kernels (oneDNN/cuDNN, the ``native`` executor) and a plain GRU/RNN on CPU on the faster
``fused_cpu`` executor (same equations; tested against the reference); ``backend="native"`` makes
every module run exactly as torch.nn does.
"""

from __future__ import annotations

import numbers
from typing import Any

from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from rnnkit.layers.recurrent import Recurrent

_PROJ_ONLY_LSTM = "proj_size argument is only supported for LSTM, not RNN or GRU"


def _check_types(input_size: Any, bias: Any, batch_first: Any, dropout: Any) -> None:
    """The argument checks of torch.nn.RNNBase that Recurrent does not make, in torch's order."""
    if not isinstance(dropout, numbers.Number) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
        return  # torch checks dropout first: let Recurrent raise its message
    for name, value in (("bias", bias), ("batch_first", batch_first)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} should be of type bool, got: {type(value).__name__}")
    if not isinstance(input_size, int):
        raise TypeError(f"input_size should be of type int, got: {type(input_size).__name__}")
    if input_size <= 0:
        raise ValueError("input_size must be greater than zero")


class _TorchCompatible(Recurrent):
    """What the three drop-ins share: torch.nn's repr, ``forward(input, hx)`` and attributes."""

    mode: str

    def forward(  # type: ignore[override]
        self, input: Tensor | PackedSequence, hx: Tensor | tuple[Tensor, Tensor] | None = None
    ):
        return super().forward(input, hx)

    @property
    def nonlinearity(self) -> str:
        return "relu" if self.cell_name == "rnn_relu" else "tanh"

    @property
    def _flat_weights_names(self) -> list[str]:
        return [n for layer in self._param_names for d in layer for n in d.values()]

    @property
    def _flat_weights(self) -> list[Tensor]:
        return [getattr(self, n) for n in self._flat_weights_names]

    @property
    def all_weights(self) -> list[list[Tensor]]:
        """Parameters grouped per layer and direction, as torch.nn's ``all_weights``."""
        return [
            [getattr(self, n) for n in d.values()] for layer in self._param_names for d in layer
        ]

    def to_torch(self):
        """The torch.nn module with the same weights (:func:`rnnkit.layers.conversion.to_torch`)."""
        from rnnkit.layers.conversion import to_torch  # conversion imports this module

        return to_torch(self)

    def flatten_parameters(self) -> None:
        """No-op kept for compatibility (torch.nn uses it to compact weights for cuDNN)."""

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        return s + self._options_repr()


class RNN(_TorchCompatible):
    """Elman RNN, a drop-in for :class:`torch.nn.RNN` (see :mod:`rnnkit.cells.elman`)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: Any = None,
        dtype: Any = None,
        *,
        proj_size: int | None = None,
        init: str = "torch",
        chrono_tmax: float = 1000.0,
        variational_dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        zoneout: float = 0.0,
        weight_drop: float = 0.0,
        residual: bool = False,
        backend: str = "auto",
    ) -> None:
        if proj_size is not None:
            raise ValueError(_PROJ_ONLY_LSTM)
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        self.mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
        _check_types(input_size, bias, batch_first, dropout)
        super().__init__(
            f"rnn_{nonlinearity}", input_size, hidden_size, num_layers, bias=bias,
            batch_first=batch_first, dropout=dropout, bidirectional=bidirectional, init=init,
            chrono_tmax=chrono_tmax, variational_dropout=variational_dropout,
            recurrent_dropout=recurrent_dropout, zoneout=zoneout, weight_drop=weight_drop,
            residual=residual, backend=backend, device=device, dtype=dtype,
        )


class LSTM(_TorchCompatible):
    """LSTM, a drop-in for :class:`torch.nn.LSTM` (see :mod:`rnnkit.cells.lstm` for the options)."""

    mode = "LSTM"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: Any = None,
        dtype: Any = None,
        *,
        peephole: bool = False,
        layer_norm: bool = False,
        forget_bias: float | None = None,
        init: str = "torch",
        chrono_tmax: float = 1000.0,
        variational_dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        zoneout: float | tuple[float, float] = 0.0,
        weight_drop: float = 0.0,
        residual: bool = False,
        backend: str = "auto",
    ) -> None:
        _check_types(input_size, bias, batch_first, dropout)
        super().__init__(
            "lstm", input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first,
            dropout=dropout, bidirectional=bidirectional, proj_size=proj_size, peephole=peephole,
            layer_norm=layer_norm, forget_bias=forget_bias, init=init, chrono_tmax=chrono_tmax,
            variational_dropout=variational_dropout, recurrent_dropout=recurrent_dropout,
            zoneout=zoneout, weight_drop=weight_drop, residual=residual, backend=backend,
            device=device, dtype=dtype,
        )


class GRU(_TorchCompatible):
    """GRU, a drop-in for :class:`torch.nn.GRU` (see :mod:`rnnkit.cells.gru`)."""

    mode = "GRU"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: Any = None,
        dtype: Any = None,
        *,
        proj_size: int | None = None,
        layer_norm: bool = False,
        init: str = "torch",
        chrono_tmax: float = 1000.0,
        variational_dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        zoneout: float = 0.0,
        weight_drop: float = 0.0,
        residual: bool = False,
        backend: str = "auto",
    ) -> None:
        if proj_size is not None:
            raise ValueError(_PROJ_ONLY_LSTM)
        _check_types(input_size, bias, batch_first, dropout)
        super().__init__(
            "gru", input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first,
            dropout=dropout, bidirectional=bidirectional, layer_norm=layer_norm, init=init,
            chrono_tmax=chrono_tmax, variational_dropout=variational_dropout,
            recurrent_dropout=recurrent_dropout, zoneout=zoneout, weight_drop=weight_drop,
            residual=residual, backend=backend, device=device, dtype=dtype,
        )

