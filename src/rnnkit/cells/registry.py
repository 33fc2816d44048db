"""Cell families by name: ``make_cell("lstm", 10, 20, proj_size=5)``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from rnnkit.cells.base import CellSpec
from rnnkit.cells.elman import ElmanSpec
from rnnkit.cells.gru import GRUSpec
from rnnkit.cells.indrnn import IndRNNSpec
from rnnkit.cells.lstm import LSTMSpec
from rnnkit.cells.mingru import MinGRUSpec
from rnnkit.cells.minlstm import MinLSTMSpec

_FACTORIES: dict[str, Callable[..., CellSpec]] = {
    "rnn_tanh": lambda *a, **k: ElmanSpec(*a, nonlinearity="tanh", **k),
    "rnn_relu": lambda *a, **k: ElmanSpec(*a, nonlinearity="relu", **k),
    "rnn_modrelu": lambda *a, **k: ElmanSpec(*a, nonlinearity="modrelu", **k),
    "lstm": LSTMSpec,
    "gru": GRUSpec,
    "mingru": MinGRUSpec,
    "minlstm": MinLSTMSpec,
    "indrnn": IndRNNSpec,
}
_CLASSES: dict[str, type[CellSpec]] = {
    "rnn_tanh": ElmanSpec,
    "rnn_relu": ElmanSpec,
    "rnn_modrelu": ElmanSpec,
    "lstm": LSTMSpec,
    "gru": GRUSpec,
    "mingru": MinGRUSpec,
    "minlstm": MinLSTMSpec,
    "indrnn": IndRNNSpec,
}


def register_cell(name: str, spec_class: type[CellSpec]) -> None:
    """Make a new cell family available to ``Recurrent(name, ...)``."""
    _FACTORIES[name] = spec_class
    _CLASSES[name] = spec_class


def cell_names() -> list[str]:
    return sorted(_FACTORIES)


def cell_options(name: str) -> set[str]:
    """The equation-changing options a family takes (beyond input_size, hidden_size, bias)."""
    fields = {f.name for f in dataclasses.fields(_CLASSES[name])}
    fields -= {"input_size", "hidden_size", "bias"}
    return fields if _CLASSES[name] is not ElmanSpec else fields - {"nonlinearity"}


def make_cell(name: str, input_size: int, hidden_size: int, bias: bool = True, **options: Any) -> CellSpec:
    """Build the spec of cell family ``name``; options a family does not have are an error."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown cell {name!r}; choose one of: {', '.join(cell_names())}")
    allowed = cell_options(name)
    for key, value in options.items():
        if key not in allowed:
            if not value:  # an option left at its "off" value is harmless
                continue
            raise ValueError(
                f"{key} is not an option of the {name!r} cell"
                + (f" (its options: {', '.join(sorted(allowed))})" if allowed else "")
            )
    options = {k: v for k, v in options.items() if k in allowed}
    return _FACTORIES[name](input_size, hidden_size, bias, **options)
