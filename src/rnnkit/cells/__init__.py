"""Cell families: the math of one time step (see :mod:`rnnkit.cells.base` for the contract)."""

from rnnkit.cells.base import CellSpec, InitOptions, Params, State
from rnnkit.cells.elman import ElmanSpec
from rnnkit.cells.gru import GRUSpec
from rnnkit.cells.lstm import LSTMSpec
from rnnkit.cells.mingru import MinGRUSpec
from rnnkit.cells.minlstm import MinLSTMSpec
from rnnkit.cells.registry import cell_names, make_cell, register_cell

__all__ = [
    "CellSpec",
    "ElmanSpec",
    "GRUSpec",
    "InitOptions",
    "LSTMSpec",
    "MinGRUSpec",
    "MinLSTMSpec",
    "Params",
    "State",
    "cell_names",
    "make_cell",
    "register_cell",
]
