"""rnnkit: recurrent neural networks for PyTorch, complete and fast."""

from rnnkit._version import __version__
from rnnkit.deploy import export_onnx
from rnnkit.explain import explain
from rnnkit.io import load, register_model, save
from rnnkit.layers.conversion import from_torch, to_torch
from rnnkit.layers.orthogonal import orthogonal_recurrence
from rnnkit.layers.recurrent import Recurrent
from rnnkit.layers.torch_cells import GRUCell, LSTMCell, RNNCell
from rnnkit.layers.torch_rnn import GRU, LSTM, RNN
from rnnkit.quantization import quantize_dynamic, quantize_step

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "GRUCell",
    "LSTMCell",
    "RNNCell",
    "Recurrent",
    "__version__",
    "explain",
    "export_onnx",
    "from_torch",
    "load",
    "orthogonal_recurrence",
    "quantize_dynamic",
    "quantize_step",
    "register_model",
    "save",
    "to_torch",
]
