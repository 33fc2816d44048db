"""The native executor: torch's own fused RNN kernels (oneDNN on CPU for the LSTM, cuDNN on GPU).

Used two ways: per layer and direction (``run``), and for a whole plain stack in one call
(``run_stack``), which is what torch.nn.LSTM/GRU/RNN do and the fastest path when it applies.
Only plain cells qualify: no layer norm or peepholes, no masks inside the loop, no per-step states.
"""

from __future__ import annotations

import torch
from torch import _VF, Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnkit.cells.base import CellSpec, Params, State, own_declaration
from rnnkit.executors.base import (
    NO_BATCHING_RULE,
    Executor,
    RunRequest,
    RunResult,
    Sweep,
    flip_sequences,
)

_KERNELS = {  # by torch.nn.RNNBase.mode, as cells declare it (CellSpec.torch_mode)
    "LSTM": _VF.lstm,
    "GRU": _VF.gru,
    "RNN_TANH": _VF.rnn_tanh,
    "RNN_RELU": _VF.rnn_relu,
}
_DTYPES = {torch.float32, torch.float64, torch.float16, torch.bfloat16}


def _outside_graph(kernel):
    """``kernel`` behind a graph break: what torch.compile does with torch.nn's RNN modules
    (``torch._dynamo.config.allow_rnn = False``). Traced into the graph, the oneDNN LSTM's training
    path crashes AOTAutograd and Inductor (``mkldnn_rnn_layer``: "expected Tensor()")."""
    return torch._dynamo.disable(kernel, reason="rnnkit: torch's RNN kernels run eagerly, as for torch.nn")


def torch_mode(cell: CellSpec) -> str | None:
    """The torch mode of ``cell`` when its own class declares one (an inheriting subclass may have
    changed the equations: it gets none), else None."""
    return own_declaration(cell, "torch_mode")


def flat_weights(cell: CellSpec, params: Params) -> list[Tensor]:
    """One layer-direction's weights in the order torch's kernels take them."""
    names = ["weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"]
    return [params[n] for n in names if n in params]


def _torch_state(cell: CellSpec, state: State) -> Tensor | tuple[Tensor, Tensor]:
    return (state[0], state[1]) if len(state) == 2 else state[0]


def _from_torch_state(cell: CellSpec, result: tuple) -> tuple[Tensor, State]:
    return result[0], tuple(result[1:])


class NativeExecutor(Executor):
    name = "native"
    description = "torch's fused RNN kernels (oneDNN on CPU for the LSTM, cuDNN on GPU)"

    def supports(self, cell: CellSpec, request: RunRequest) -> str | None:
        if torch_mode(cell) not in _KERNELS:
            return f"torch has no kernel for the {cell.name!r} cell"
        reason = cell.unsupported_by_torch()
        if reason:
            return reason
        if request.has_masks:
            return "recurrent dropout and zoneout act inside the time loop, which torch's kernels cannot"
        if request.return_states:
            return "torch's kernels do not return per-step states"
        if request.dtype not in _DTYPES:
            return f"dtype {request.dtype} is not supported by torch's RNN kernels"
        if request.vmapped:
            return NO_BATCHING_RULE
        return None

    def run_sweep(self, cell: CellSpec, params: Params, x: Tensor, state0: State, sweep: Sweep) -> RunResult:
        lengths, reverse = sweep.lengths, sweep.reverse  # supports() refused masks and per-step states
        if reverse:
            x = flip_sequences(x, lengths)
        hx = tuple(s.unsqueeze(0) for s in state0)
        output, final = self.run_stack(
            cell, flat_weights(cell, params), x, hx, lengths, num_layers=1, dropout=0.0,
            training=False, bidirectional=False,
        )
        if reverse:
            output = flip_sequences(output, lengths)
        return RunResult(output, tuple(s.squeeze(0) for s in final), None)

    def run_stack(
        self,
        cell: CellSpec,
        weights: list[Tensor],
        x: Tensor,
        hx: State,
        lengths: Tensor | None,
        *,
        num_layers: int,
        dropout: float,
        training: bool,
        bidirectional: bool,
    ) -> tuple[Tensor, State]:
        """Run a whole plain stack: ``x`` (T, B, I) time-major, ``hx`` components (L*D, B, n).

        Returns the last layer's outputs (T, B, D*out), zero past each length, and the final states.
        """
        kernel = _KERNELS[torch_mode(cell)]
        if torch.compiler.is_compiling() and not torch.compiler.is_exporting():
            kernel = _outside_graph(kernel)
        has_bias = cell.bias
        if lengths is None:
            result = kernel(
                x, _torch_state(cell, hx), weights, has_bias, num_layers, dropout, training,
                bidirectional, False,
            )
            return _from_torch_state(cell, result)
        packed = pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False)
        order = packed.sorted_indices
        hx_sorted = tuple(s.index_select(1, order) for s in hx)
        result = kernel(
            packed.data, packed.batch_sizes, _torch_state(cell, hx_sorted), weights, has_bias,
            num_layers, dropout, training, bidirectional,
        )
        data, final = _from_torch_state(cell, result)
        out_packed = PackedSequence(data, packed.batch_sizes, order, packed.unsorted_indices)
        output, _ = pad_packed_sequence(out_packed, total_length=x.shape[0])
        final = tuple(s.index_select(1, packed.unsorted_indices) for s in final)
        return output, final
