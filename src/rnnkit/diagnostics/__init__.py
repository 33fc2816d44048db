"""Gradient-flow diagnostics: make vanishing and exploding gradients visible (docs/diagnostics.md).

- :func:`gradient_flow`: ``|dL/ds_k|`` for every step, layer and direction,
- :func:`input_influence`: ``|dy_T/dx_t|`` over t and the memory horizon,
- :func:`gate_statistics`: fraction of saturated sigmoid/tanh units per gate,
- :func:`recurrent_spectrum`: singular values and spectral radius per ``weight_hh`` gate block,
- :mod:`~rnnkit.diagnostics.plots`: heat maps, influence curves, saturation histograms (PNG),
- :class:`GradientFlowRecorder`: all of the above every N training steps, into a directory,
- :func:`run_demo`: Elman vs LSTM vs GRU on the adding problem.

All of them replay the recurrent layer with its cell's reference math (:func:`trace`), so they work
whatever executor the layer runs on.
"""

from rnnkit.diagnostics.demo import run_demo
from rnnkit.diagnostics.gates import GateStats, GateSummary
from rnnkit.diagnostics.gradient_flow import GradientFlow, gradient_flow
from rnnkit.diagnostics.influence import Influence, input_influence
from rnnkit.diagnostics.recorder import GradientFlowRecorder
from rnnkit.diagnostics.saturation import gate_statistics
from rnnkit.diagnostics.snapshot import Snapshot, snapshot
from rnnkit.diagnostics.spectrum import BlockSpectrum, recurrent_spectrum
from rnnkit.diagnostics.trace import DiagnosticsMismatch, Tape, find_recurrent, trace

__all__ = [
    "BlockSpectrum",
    "DiagnosticsMismatch",
    "GateStats",
    "GateSummary",
    "GradientFlow",
    "GradientFlowRecorder",
    "Influence",
    "Snapshot",
    "Tape",
    "find_recurrent",
    "gate_statistics",
    "gradient_flow",
    "input_influence",
    "recurrent_spectrum",
    "run_demo",
    "snapshot",
    "trace",
]
