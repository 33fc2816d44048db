"""ONNX export of :class:`rnnkit.Recurrent` stacks with explicit state inputs and outputs.

The graph is built directly from the module's cell specs and parameters (``onnx.helper``), not traced.
A layer of a plain family (``lstm`` also with peepholes, ``gru``, ``rnn_tanh``, ``rnn_relu``) is one of
ONNX's own recurrent operators (``LSTM``, ``GRU``, ``RNN``), whose equations are torch.nn's once the
gate blocks are reordered (torch i,f,g,o -> ONNX i,o,f,c; torch r,z,n -> ONNX z,r,h with
``linear_before_reset=1``). Every other layer is the input projection for all steps (one MatMul, with
LayerNormalization for ``layer_norm``) and an ONNX ``Scan`` over its family's step, written here
from the equations in ``cells/<family>.py``; zoneout at evaluation is the lerp to the previous state.
The batch and time axes are symbolic (``batch``, ``time``).

Sequence graph: ``input`` (T, B, I) (or (B, T, I) with ``batch_first``), ``h0`` (L*D, B, H_out)
[, ``c0`` (L*D, B, H)] -> ``output``, ``h_n`` [, ``c_n``], torch.nn's shapes.
Step graph (``step=True``): ``input`` (B, I) is one time step; same state names; ``output`` (B, H_out).
Feeding ``h_n``/``c_n`` back as ``h0``/``c0`` streams a sequence.

Only the equations written here are exported: a family without a lowering (a user's spec class, or a
subclass that does not declare its own kernel family) raises :class:`OnnxExportError` naming it, as
do training-only configurations; never a silently different graph.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from rnnkit.cells.base import CellSpec
from rnnkit.cells.registry import cell_names, make_cell, options_of
from rnnkit.errors import UserError
from rnnkit.executors.native import torch_mode
from rnnkit.layers.recurrent import Recurrent

#: opsets the graph is built for: LSTM/GRU/RNN as used here exist since 14; Squeeze/Unsqueeze take
#: their axes as an input since 13
MIN_OPSET = 14
DEFAULT_OPSET = 17

#: ONNX operator per torch mode, and the family options (beyond torch.nn's) the operator computes
_OPERATORS: dict[str, tuple[str, frozenset[str]]] = {
    "LSTM": ("LSTM", frozenset({"peephole"})),
    "GRU": ("GRU", frozenset()),
    "RNN_TANH": ("RNN", frozenset()),
    "RNN_RELU": ("RNN", frozenset()),
}
#: torch's gate blocks in ONNX's order
_GATE_ORDER = {"LSTM": (0, 3, 1, 2), "GRU": (1, 0, 2), "RNN_TANH": (0,), "RNN_RELU": (0,)}


class OnnxExportError(UserError, ValueError):
    """The module (or the requested export) has no exact ONNX graph here; the message says why."""


#: kernel families with an ONNX Scan lowering of their step (every option of theirs)
_SCAN_FAMILIES = ("lstm", "gru", "elman_tanh", "elman_relu", "elman_modrelu", "indrnn", "mingru", "minlstm")


def supported_families() -> tuple[str, ...]:
    """Registered cell names the ONNX export handles (with every option): those whose spec class
    declares a kernel family lowered here."""
    return tuple(n for n in cell_names() if _family(make_cell(n, 1, 2)) in _SCAN_FAMILIES)


def _require_onnx() -> Any:
    try:
        import onnx
    except ImportError as e:
        raise OnnxExportError(
            "ONNX export needs the onnx package: pip install 'rnnkit[deploy]' (onnx, onnxscript, onnxruntime)"
        ) from e
    return onnx


def check_exportable(module: torch.nn.Module, *, step: bool = False) -> None:
    """Raise :class:`OnnxExportError` if ``module`` cannot be exported exactly (``step``: as a
    single-step graph)."""
    check_inference(module, "export_onnx")
    assert isinstance(module, Recurrent)
    name = module.cell_name
    for cell in module.cells:
        _check_cell(cell, name)
    dtype = module.weight_ih_l0.dtype
    if dtype != torch.float32:
        raise OnnxExportError(
            f"ONNX export supports float32 parameters, the {name!r} layer has {dtype}; call .float() first"
        )
    if step and module.bidirectional:
        raise OnnxExportError(
            "a step graph runs forward in time; a bidirectional layer's reverse direction needs the "
            "whole sequence: export the sequence graph (step=False)"
        )


def check_inference(module: torch.nn.Module, what: str) -> None:
    """Raise :class:`OnnxExportError` unless ``module`` is an ``rnnkit.Recurrent`` whose forward pass is
    deterministic (eval mode, or train mode without stochastic regularisers)."""
    if not isinstance(module, Recurrent):
        raise OnnxExportError(
            f"{what} takes an rnnkit.Recurrent (or rnnkit.LSTM/GRU/RNN), got {type(module).__name__}"
        )
    name = module.cell_name
    if module.training:
        stochastic = [
            f"{n}={getattr(module, n)}"
            for n in ("variational_dropout", "recurrent_dropout", "weight_drop")
            if getattr(module, n) > 0
        ]
        if module.dropout > 0 and module.num_layers > 1:
            stochastic.append(f"dropout={module.dropout}")
        if any(module.zoneout):
            stochastic.append(f"zoneout={module.zoneout}")
        if stochastic:
            raise OnnxExportError(
                f"the {name!r} layer is in training mode with {', '.join(stochastic)} (random masks "
                "drawn per call): a training-only configuration has no inference graph; call .eval() first"
            )


def _family(cell: CellSpec) -> str | None:
    """The kernel family ``cell``'s own class declares (an inheriting subclass may have changed the
    equations: it gets none, as in the executors)."""
    return cell.kernel_family() if "kernel_family" in vars(type(cell)) else None


LOWERINGS = ("auto", "scan")


def _route(cell: CellSpec, zoneout: bool, lowering: str = "auto") -> str:
    """"op" (ONNX's LSTM/GRU/RNN operator computes it) or "scan" (an ONNX Scan over the family's step);
    ``lowering="scan"`` takes the Scan for every layer."""
    mode = torch_mode(cell)
    if lowering == "auto" and mode in _OPERATORS and not zoneout:
        allowed = _OPERATORS[mode][1]
        defaults = {f.name: f.default for f in dataclasses.fields(cell)}
        if all(v == defaults.get(k) or k in allowed for k, v in options_of(cell).items()):
            return "op"
    return "scan"


def _check_cell(cell: CellSpec, name: str) -> None:
    family = _family(cell)
    if family not in _SCAN_FAMILIES:
        raise OnnxExportError(
            f"cell family {name!r} ({type(cell).__name__}) is not supported by the ONNX export yet; "
            f"supported: {', '.join(supported_families())}"
        )


def _check_opset(opset: int | None, onnx: Any) -> int:
    newest = onnx.defs.onnx_opset_version()
    if opset is None:
        return DEFAULT_OPSET
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise OnnxExportError(
            f"unsupported ONNX opset {opset!r}: choose {MIN_OPSET} to {newest} (default {DEFAULT_OPSET})"
        )
    return opset


class _GraphBuilder:
    """Nodes and initialisers with unique names."""

    def __init__(self, onnx: Any) -> None:
        self.onnx = onnx
        self.helper = onnx.helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._counter = [0]

    def sub(self) -> _GraphBuilder:
        """A builder for a subgraph (a Scan body): its own nodes; constants go to the outer graph's
        initialisers, which a subgraph may read by name."""
        inner = _GraphBuilder(self.onnx)
        inner.initializers = self.initializers
        inner._counter = self._counter
        return inner

    def fresh(self, stem: str) -> str:
        self._counter[0] += 1
        return f"{stem}_{self._counter[0]}"

    def const(self, stem: str, value: Tensor | Sequence[int]) -> str:
        name = self.fresh(stem)
        if isinstance(value, Tensor):
            array = value.detach().to("cpu", torch.float32).contiguous().numpy()
        else:
            import numpy as np

            array = np.asarray(list(value), dtype=np.int64)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: Sequence[str], n_out: int = 1, outputs: Sequence[str] | None = None,
             **attrs: Any) -> list[str]:
        outs = list(outputs) if outputs is not None else [self.fresh(op.lower()) for _ in range(n_out)]
        self.nodes.append(self.helper.make_node(op, list(inputs), outs, name=self.fresh(f"n_{op}"), **attrs))
        return outs


def _blocks(t: Tensor, order: tuple[int, ...]) -> Tensor:
    """The gate blocks of ``t`` (rows, stacked along dim 0) in ``order``."""
    chunks = t.chunk(len(order), dim=0)
    return torch.cat([chunks[i] for i in order], dim=0)


def _layer(g: _GraphBuilder, module: Recurrent, layer: int, x: str, h0: str, c0: str | None,
           lengths: _Lengths | None = None) -> tuple[str, str, str | None]:
    """One layer (both directions) as an ONNX recurrent operator: x (T, B, In) -> (T, B, D*H)."""
    cell = module.cells[layer]
    mode = torch_mode(cell)
    assert mode is not None
    op, _ = _OPERATORS[mode]
    order = _GATE_ORDER[mode]
    D = module.num_directions
    params = [module.layer_params(layer, d) for d in range(D)]
    with torch.no_grad():
        W = g.const(f"W_l{layer}", torch.stack([_blocks(p["weight_ih"], order) for p in params]))
        R = g.const(f"R_l{layer}", torch.stack([_blocks(p["weight_hh"], order) for p in params]))
        B = ""
        if "bias_ih" in params[0]:
            B = g.const(f"B_l{layer}", torch.stack([
                torch.cat([_blocks(p["bias_ih"], order), _blocks(p["bias_hh"], order)]) for p in params
            ]))
        P = ""
        if getattr(cell, "peephole", False):
            P = g.const(f"P_l{layer}", torch.stack([
                torch.cat([p["weight_peephole_i"], p["weight_peephole_o"], p["weight_peephole_f"]])
                for p in params
            ]))
    attrs: dict[str, Any] = {
        "hidden_size": cell.hidden_size,
        "direction": "bidirectional" if D == 2 else "forward",
    }
    if op == "GRU":
        attrs["linear_before_reset"] = 1
    if op == "RNN":
        attrs["activations"] = ["Tanh" if mode == "RNN_TANH" else "Relu"] * D
    start, end = g.const("start", [layer * D]), g.const("end", [(layer + 1) * D])
    axis0 = g.const("axis0", [0])
    h0_l = g.node("Slice", [h0, start, end, axis0])[0]
    inputs = [x, W, R, B, lengths.int32 if lengths is not None else "", h0_l]
    c0_l = None
    if op == "LSTM":
        assert c0 is not None
        c0_l = g.node("Slice", [c0, start, end, axis0])[0]
        inputs += [c0_l, P]
    while inputs[-1] == "":
        inputs.pop()
    outs = g.node(op, inputs, n_out=3 if op == "LSTM" else 2, **attrs)
    y = outs[0]  # (T, D, B, H)
    if D == 1:
        y = g.node("Squeeze", [y, g.const("axis1", [1])])[0]
    else:
        y = g.node("Transpose", [y], perm=[0, 2, 1, 3])[0]
        y = g.node("Reshape", [y, g.const("shape", [0, 0, -1])])[0]
    return y, outs[1], outs[2] if op == "LSTM" else None


def _linear(g: _GraphBuilder, x: str, weight: Tensor, bias: Tensor | None, stem: str) -> str:
    """``x @ weight^T (+ bias)`` over the last axis."""
    y = g.node("MatMul", [x, g.const(f"{stem}_T", weight.t())])[0]
    return y if bias is None else g.node("Add", [y, g.const(f"{stem}_b", bias)])[0]


def _layer_norm(g: _GraphBuilder, x: str, params: dict[str, Tensor], prefix: str) -> str:
    """LayerNormalization over the last axis, eps 1e-5 (rnnkit.cells.base.layer_norm)."""
    w, b = g.const(f"{prefix}_w", params[f"{prefix}_weight"]), g.const(f"{prefix}_b", params[f"{prefix}_bias"])
    return g.node("LayerNormalization", [x, w, b], axis=-1, epsilon=1e-5)[0]


def _normed_linear(g: _GraphBuilder, x: str, params: dict[str, Tensor], which: str, norm: bool) -> str:
    """rnnkit.cells.base.normed_linear: ``W x + b``, or ``LN(W x) + b``."""
    bias = params.get(f"bias_{which}")
    if not norm:
        return _linear(g, x, params[f"weight_{which}"], bias, which)
    y = _layer_norm(g, _linear(g, x, params[f"weight_{which}"], None, which), params, f"layer_norm_{which}")
    return y if bias is None else g.node("Add", [y, g.const(f"b_{which}", bias)])[0]


def _split(g: _GraphBuilder, x: str, n: int, size: int) -> list[str]:
    """``n`` blocks of ``size`` along the last axis."""
    axis = g.const("axis", [-1])
    return [g.node("Slice", [x, g.const("s", [k * size]), g.const("e", [(k + 1) * size]), axis])[0]
            for k in range(n)]


def _op(g: _GraphBuilder, op: str, *xs: str) -> str:
    return g.node(op, list(xs))[0]


def _candidate(g: _GraphBuilder, cell: CellSpec, pre: str) -> str:
    """minGRU/minLSTM's candidate: ``g(x) = x + 0.5 (x >= 0), sigmoid(x) (x < 0)`` or the identity."""
    if getattr(cell, "activation", "g") == "identity":
        return pre
    positive = g.node("GreaterOrEqual", [pre, g.const("zero", torch.zeros(()))])[0]
    return g.node("Where", [positive, _op(g, "Add", pre, g.const("half", torch.tensor(0.5))),
                            _op(g, "Sigmoid", pre)])[0]


def _softplus(g: _GraphBuilder, x: str) -> str:
    return _op(g, "Softplus", x)


def _step_body(g: _GraphBuilder, cell: CellSpec, params: dict[str, Tensor], gx: str, state: list[str]
               ) -> list[str]:
    """One step of ``cell`` (its family's equations, as in ``cells/<family>.py``): new state components."""
    family = _family(cell)
    H = cell.hidden_size
    if family in ("elman_tanh", "elman_relu", "elman_modrelu"):
        pre = _op(g, "Add", gx, _linear(g, state[0], params["weight_hh"], params.get("bias_hh"), "hh"))
        if family == "elman_tanh":
            return [_op(g, "Tanh", pre)]
        if family == "elman_relu":
            return [_op(g, "Relu", pre)]
        shifted = _op(g, "Relu", _op(g, "Add", _op(g, "Abs", pre), g.const("modrelu_b", params["modrelu_bias"])))
        return [_op(g, "Mul", _op(g, "Sign", pre), shifted)]
    if family == "indrnn":
        u = cell.recurrent_weight(params)
        assert u is not None
        pre = _op(g, "Add", gx, _op(g, "Mul", g.const("u", u), state[0]))
        if "bias_hh" in params:
            pre = _op(g, "Add", pre, g.const("b_hh", params["bias_hh"]))
        return [_op(g, "Relu" if getattr(cell, "nonlinearity", "relu") == "relu" else "Tanh", pre)]
    if family == "gru":
        gh = _normed_linear(g, state[0], params, "hh", getattr(cell, "layer_norm", False))
        xr, xz, xn = _split(g, gx, 3, H)
        hr, hz, hn = _split(g, gh, 3, H)
        r = _op(g, "Sigmoid", _op(g, "Add", xr, hr))
        z = _op(g, "Sigmoid", _op(g, "Add", xz, hz))
        n = _op(g, "Tanh", _op(g, "Add", xn, _op(g, "Mul", r, hn)))
        return [_op(g, "Add", n, _op(g, "Mul", z, _op(g, "Sub", state[0], n)))]  # (1-z) n + z h
    if family == "lstm":
        h, c = state
        gh = _normed_linear(g, h, params, "hh", getattr(cell, "layer_norm", False))
        i, f, gg, o = _split(g, _op(g, "Add", gx, gh), 4, H)
        if getattr(cell, "peephole", False):
            i = _op(g, "Add", i, _op(g, "Mul", g.const("p_i", params["weight_peephole_i"]), c))
            f = _op(g, "Add", f, _op(g, "Mul", g.const("p_f", params["weight_peephole_f"]), c))
        c_new = _op(g, "Add", _op(g, "Mul", _op(g, "Sigmoid", f), c),
                    _op(g, "Mul", _op(g, "Sigmoid", i), _op(g, "Tanh", gg)))
        if getattr(cell, "peephole", False):
            o = _op(g, "Add", o, _op(g, "Mul", g.const("p_o", params["weight_peephole_o"]), c_new))
        c_out = _layer_norm(g, c_new, params, "layer_norm_c") if getattr(cell, "layer_norm", False) else c_new
        h_new = _op(g, "Mul", _op(g, "Sigmoid", o), _op(g, "Tanh", c_out))
        if getattr(cell, "proj_size", 0) > 0:
            h_new = _linear(g, h_new, params["weight_hr"], None, "hr")
        return [h_new, c_new]
    if family == "mingru":  # a = sigmoid(-pz), b = sigmoid(pz) * cand(ph)
        pz, ph = _split(g, gx, 2, H)
        a = _op(g, "Sigmoid", _op(g, "Neg", pz))
        b = _op(g, "Mul", _op(g, "Sigmoid", pz), _candidate(g, cell, ph))
        return [_op(g, "Add", _op(g, "Mul", a, state[0]), b)]
    if family == "minlstm":  # d = softplus(-pi) - softplus(-pf); a = sigmoid(d), b = sigmoid(-d) cand(ph)
        pf, pi, ph = _split(g, gx, 3, H)
        d = _op(g, "Sub", _softplus(g, _op(g, "Neg", pi)), _softplus(g, _op(g, "Neg", pf)))
        a = _op(g, "Sigmoid", d)
        b = _op(g, "Mul", _op(g, "Sigmoid", _op(g, "Neg", d)), _candidate(g, cell, ph))
        return [_op(g, "Add", _op(g, "Mul", a, state[0]), b)]
    raise OnnxExportError(f"no ONNX lowering for kernel family {family!r}")  # _check_cell keeps this out


@dataclasses.dataclass(frozen=True)
class _Lengths:
    """The graph's ``lengths`` input as the layers take it: int32 (B,) for ONNX's operators
    (``sequence_lens``) and a (T, B, 1) bool ``t < length`` for the Scans."""

    int32: str
    valid: str


def _lengths(g: _GraphBuilder, x: str) -> _Lengths:
    """From the int64 input ``lengths`` (B,) and the time-major input ``x`` (T, B, I)."""
    import numpy as np

    int32 = g.node("Cast", ["lengths"], to=g.onnx.TensorProto.INT32)[0]
    T = g.node("Squeeze", [g.node("Gather", [g.node("Shape", [x])[0], g.const("index0", [0])], axis=0)[0],
                           g.const("axis0", [0])])[0]
    zero, one = g.fresh("zero_i"), g.fresh("one_i")
    g.initializers += [g.onnx.numpy_helper.from_array(np.array(0, np.int64), zero),
                       g.onnx.numpy_helper.from_array(np.array(1, np.int64), one)]
    steps = g.node("Unsqueeze", [g.node("Range", [zero, T, one])[0], g.const("axis1", [1])])[0]  # (T, 1)
    valid = g.node("Less", [steps, g.node("Unsqueeze", ["lengths", g.const("axis0", [0])])[0]])[0]  # (T, B)
    return _Lengths(int32, g.node("Unsqueeze", [valid, g.const("axis2", [2])])[0])


def _scan_layer(g: _GraphBuilder, module: Recurrent, layer: int, x: str, h0: str, c0: str | None,
                lengths: _Lengths | None = None) -> tuple[str, str, str | None]:
    """One layer (both directions) as ONNX Scans over the family's step: x (T, B, In) -> (T, B, D*H)."""
    helper, F = g.helper, g.onnx.TensorProto.FLOAT
    cell = module.cells[layer]
    D = module.num_directions
    sizes = cell.state_sizes()
    zoneout = module.zoneout
    outs, finals = [], [[] for _ in sizes]
    for direction in range(D):
        with torch.no_grad():
            params = {k: v.detach() for k, v in module.layer_params(layer, direction).items()}
            index = layer * D + direction
            start, end, axis0 = g.const("start", [index]), g.const("end", [index + 1]), g.const("axis0", [0])
            init = [g.node("Squeeze", [g.node("Slice", [s0, start, end, axis0])[0], axis0])[0]
                    for s0 in ([h0, c0] if len(sizes) == 2 else [h0]) if s0 is not None]
            norm_ih = getattr(cell, "layer_norm", False) and _family(cell) in ("lstm", "gru")
            gx = _normed_linear(g, x, params, "ih", norm_ih)  # every step's input projection at once
            body = g.sub()
            state_in = [body.fresh(f"state{k}_in") for k in range(len(sizes))]
            gx_t = body.fresh("gx_t")
            valid_t = body.fresh("valid_t")
            new = _step_body(body, cell, params, gx_t, state_in)
            state_out = []
            for k, (n, old) in enumerate(zip(new, state_in, strict=True)):
                if zoneout[k] > 0:  # evaluation zoneout: lerp(new, old, p)
                    p = body.const("zoneout", torch.tensor(zoneout[k]))
                    n = _op(body, "Add", n, _op(body, "Mul", p, _op(body, "Sub", old, n)))
                if lengths is not None:  # at or past a sequence's length its state stays
                    n = _op(body, "Where", valid_t, n, old)
                state_out.append(body.node("Identity", [n], outputs=[body.fresh(f"state{k}_out")])[0])
            if lengths is None:
                y_t = body.node("Identity", [state_out[0]], outputs=[body.fresh("y_t")])[0]
            else:  # and outputs zeros
                zero = body.const("zero", torch.zeros(()))
                y_t = body.node("Where", [valid_t, state_out[0], zero], outputs=[body.fresh("y_t")])[0]
            graph = helper.make_graph(
                body.nodes, body.fresh("step"),
                [helper.make_tensor_value_info(n, F, ["batch", size]) for n, size in zip(state_in, sizes, strict=True)]
                + [helper.make_tensor_value_info(gx_t, F, ["batch", None])]
                + ([helper.make_tensor_value_info(valid_t, g.onnx.TensorProto.BOOL, ["batch", 1])]
                   if lengths is not None else []),
                [helper.make_tensor_value_info(n, F, ["batch", size]) for n, size in zip(state_out, sizes, strict=True)]
                + [helper.make_tensor_value_info(y_t, F, ["batch", sizes[0]])],
            )
            reverse = [1] if direction == 1 else [0]
            scanned = [gx] if lengths is None else [gx, lengths.valid]
            results = g.node("Scan", [*init, *scanned], n_out=len(sizes) + 1, body=graph,
                             num_scan_inputs=len(scanned), scan_input_directions=reverse * len(scanned),
                             scan_output_directions=reverse)
        outs.append(results[-1])
        for k in range(len(sizes)):
            finals[k].append(g.node("Unsqueeze", [results[k], g.const("axis0", [0])])[0])
    y = outs[0] if D == 1 else g.node("Concat", outs, axis=-1)[0]
    parts = [f[0] if D == 1 else g.node("Concat", f, axis=0)[0] for f in finals]
    return y, parts[0], parts[1] if len(parts) > 1 else None


def build_onnx_model(module: Recurrent, *, opset: int | None = None, step: bool = False,
                     lowering: str = "auto", lengths: bool = False) -> Any:
    """The ONNX ``ModelProto`` of ``module`` (see the module docstring for inputs and outputs)."""
    onnx = _require_onnx()
    if lowering not in LOWERINGS:
        raise OnnxExportError(f"lowering must be one of {', '.join(map(repr, LOWERINGS))}, got {lowering!r}")
    check_exportable(module, step=step)
    if step and lengths:
        raise OnnxExportError("lengths belong to the sequence graph; a step graph's caller decides which rows to step")
    opset = _check_opset(opset, onnx)
    if opset < 17 and any(getattr(c, "layer_norm", False) for c in module.cells):
        raise OnnxExportError(f"layer_norm is exported as LayerNormalization, which needs opset >= 17 (got {opset})")
    helper, F = onnx.helper, onnx.TensorProto.FLOAT
    g = _GraphBuilder(onnx)
    has_c = module._state_is_tuple
    LD = module.num_layers * module.num_directions
    h_out, H = module.cells[0].state_sizes()[0], module.hidden_size

    if step:
        x_shape: list[Any] = ["batch", module.input_size]
        out_shape: list[Any] = ["batch", module.output_size]
    elif module.batch_first:
        x_shape, out_shape = ["batch", "time", module.input_size], ["batch", "time", module.output_size]
    else:
        x_shape, out_shape = ["time", "batch", module.input_size], ["time", "batch", module.output_size]
    inputs = [helper.make_tensor_value_info("input", F, x_shape),
              helper.make_tensor_value_info("h0", F, [LD, "batch", h_out])]
    outputs = [helper.make_tensor_value_info("output", F, out_shape),
               helper.make_tensor_value_info("h_n", F, [LD, "batch", h_out])]
    if has_c:
        inputs.append(helper.make_tensor_value_info("c0", F, [LD, "batch", H]))
        outputs.append(helper.make_tensor_value_info("c_n", F, [LD, "batch", H]))
    if lengths:
        inputs.append(helper.make_tensor_value_info("lengths", onnx.TensorProto.INT64, ["batch"]))

    x = "input"
    if step:
        x = g.node("Unsqueeze", [x, g.const("axis0", [0])])[0]
    elif module.batch_first:
        x = g.node("Transpose", [x], perm=[1, 0, 2])[0]
    hs, cs = [], []
    valid = _lengths(g, x) if lengths else None
    for layer in range(module.num_layers):
        run = _layer if _route(module.cells[layer], any(module.zoneout), lowering) == "op" else _scan_layer
        y, h_n, c_n = run(g, module, layer, x, "h0", "c0" if has_c else None, valid)
        if module.residual and layer > 0:
            y = g.node("Add", [y, x])[0]
        x = y
        hs.append(h_n)
        if c_n is not None:
            cs.append(c_n)
    if step:
        g.node("Squeeze", [x, g.const("axis0", [0])], outputs=["output"])
    elif module.batch_first:
        g.node("Transpose", [x], perm=[1, 0, 2], outputs=["output"])
    else:
        g.node("Identity", [x], outputs=["output"])
    for final, parts in (("h_n", hs), ("c_n", cs)):
        if parts:
            g.node("Concat", parts, outputs=[final], axis=0)

    graph = helper.make_graph(g.nodes, f"rnnkit_{module.cell_name}{'_step' if step else ''}",
                              inputs, outputs, initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="rnnkit")
    model.ir_version = min(model.ir_version, 10)  # onnxruntime releases lag onnx's newest IR version
    onnx.checker.check_model(model, full_check=True)
    return model


def export_onnx(
    module: torch.nn.Module,
    path: str | os.PathLike[str],
    *,
    example_input: Tensor | None = None,
    opset: int | None = None,
    step: bool = False,
    lowering: str = "auto",
    lengths: bool = False,
) -> Any:
    """Write ``module`` as an ONNX file at ``path`` and return the ``onnx.ModelProto``.

    The sequence graph (or, with ``step=True``, one time step) with explicit state inputs ``h0``
    [``c0``] and outputs ``h_n`` [``c_n``], dynamic batch and time. Supported: every registered family
    with every option (``lstm``, ``gru``, ``rnn_tanh``/``relu``/``modrelu``, ``indrnn``, ``mingru``,
    ``minlstm``), any number of layers, bidirectional (sequence graph only), ``batch_first``,
    ``residual``, without bias, zoneout (its evaluation form); in eval mode (or train mode without
    stochastic regularisers); float32. Anything else raises :class:`OnnxExportError`.

    ``lengths=True`` adds an int64 input ``lengths`` (B,) to the sequence graph, with
    ``forward(..., lengths=)``'s meaning: steps at or past a sequence's length leave its state
    unchanged and output zeros (a reverse direction starts at each sequence's own last step).

    ``lowering``: "auto" (ONNX's LSTM/GRU/RNN operators where they compute the layer, else a Scan) or
    "scan" (a Scan for every layer; for comparison).

    ``example_input``: if given, the written file is run in onnxruntime on it (zero initial state,
    full lengths) and compared with ``module``; a difference above 1e-4 raises (needs onnxruntime).
    """
    model = build_onnx_model(module, opset=opset, step=step, lowering=lowering,  # type: ignore[arg-type]
                             lengths=lengths)
    onnx = _require_onnx()
    onnx.save(model, os.fspath(path))
    if example_input is not None:
        _verify(module, os.fspath(path), example_input, step, lengths)  # type: ignore[arg-type]
    return model


def onnx_session(path: str | os.PathLike[str] | bytes) -> Any:
    """An onnxruntime CPU session for an exported file (or a serialised model)."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise OnnxExportError("running an ONNX file needs onnxruntime: pip install 'rnnkit[deploy]'") from e
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: its graph optimiser's notes are not the user's concern
    model = path if isinstance(path, bytes) else os.fspath(path)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _verify(module: Recurrent, path: str, example_input: Tensor, step: bool, lengths: bool) -> None:
    x = example_input.detach().to("cpu", torch.float32)
    want_dim = 2 if step else 3
    if x.dim() != want_dim:
        raise OnnxExportError(
            f"example_input must be {want_dim}-D for the {'step' if step else 'sequence'} graph, got {x.dim()}-D"
        )
    batch = x.shape[0] if step or module.batch_first else x.shape[1]
    sizes = module._state_sizes
    LD = module.num_layers * module.num_directions
    state = tuple(torch.zeros(LD, batch, n) for n in sizes)
    with torch.no_grad():
        if step:
            y, final = module(x.unsqueeze(1 if module.batch_first else 0), state if len(state) > 1 else state[0])
            y = y.squeeze(1 if module.batch_first else 0)
        else:
            y, final = module(x, state if len(state) > 1 else state[0])
    finals = final if isinstance(final, tuple) else (final,)
    feeds = {"input": x.numpy(), **{k: s.numpy() for k, s in zip(("h0", "c0"), state, strict=False)}}
    if lengths:  # the example's sequences at full length
        feeds["lengths"] = torch.full((batch,), x.shape[1 if module.batch_first else 0], dtype=torch.int64).numpy()
    got = onnx_session(path).run(None, feeds)
    for name, a, b in zip(("output", "h_n", "c_n"), got, (y, *finals), strict=False):
        err = float((torch.from_numpy(a) - b).abs().max())
        if err > 1e-4:
            raise OnnxExportError(f"the exported graph's {name} differs from the module by {err:.3g} on example_input")
