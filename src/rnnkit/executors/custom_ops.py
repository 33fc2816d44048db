"""The compiled kernels as ``torch.library`` custom operators, for inference and training.

Graph capture (``torch.compile``, ``torch.export``) cannot look inside a pybind11 call: it breaks the
graph there, and an exported program cannot hold it at all. As custom operators with fake (meta)
implementations, the kernels become single graph nodes whose output shapes are known symbolically:
``torch.compile(fullgraph=True)`` and ``torch.export`` with dynamic batch and time dimensions.

Training under ``torch.compile`` records operators too (no graph break at the kernels): the fused
kernels' forward as ``fused_rnn_train``, which returns the buffers its backward reads as outputs, and
the scan as ``scan`` itself; their autograd formulas call the backward operators, so AOTAutograd puts
the kernels' forward in the forward graph and their backward in the backward graph. Double backward
through those raises (AOTAutograd's own error, or the backward operators' where no AOTAutograd runs):
only eager recomputes higher-order gradients with the reference loop
(:mod:`rnnkit.executors.recompute`).

This module declares the operators' schemas and their fake implementations; their CPU kernels and
autograd formulas are C++ (``csrc/fused_cpu/operators.cpp``, ``csrc/scan/operators.cpp``), registered
when the extension loads, so that a compiled graph calls the kernels from the dispatcher without the
interpreter (as Python kernels the operators cost 15-40 us a call, which made a compiled training
step of a small 2-layer LSTM 1.07x eager). Until its extension is loaded, an operator's kernel is a
Python stand-in that loads it (a ``torch.export`` archive loaded in a new process).

Eager calls go straight to the extension, through
the autograd Functions of :mod:`rnnkit.executors.fused_cpu` and :mod:`rnnkit.executors.scan` when
autograd needs a backward (an operator's dispatch costs microseconds a call); the executors call these
operators only while a graph is being captured (:func:`capturing`), and project the input with
``torch.nn.functional.linear`` or the cell's ``project_input`` then (the compiler's own GEMM), except
in a compiled training step, which keeps eager's packed projection as ``rnnkit::project`` (its ``dx``
and ``dW`` in MKL's sgemm made the compiled 2-layer LSTM step at (100, 16, 128, 128) 1.6x eager).

Operators (all return new tensors, none aliases an input):

- ``rnnkit::fused_rnn(family, options, names, gx, h0, c0, params, rmask, zh, zc, lengths, reverse)
  -> (y, h_T, c_T)``: every fused kernel family (``CellSpec.kernel_family()``); ``options`` the cell's
  options as ``"name=value;..."``, ``names`` the parameters' names as ``"weight_hh,bias_hh,..."``
  in the order of the tensor list ``params`` (the schema has no dict or string list); ``c0`` and
  ``c_T`` (empty) only for the two-state LSTM;
- ``rnnkit::scan(family, act_g, gx, h0, z, lengths, reverse) -> (y, h_T)``: minGRU and minLSTM, differentiable (its
  backward the operator ``scan_backward``);
- ``rnnkit::lstm_layer(options, x, h0, c0, w_ih, w_hh, b_ih, b_hh, small_lstm) -> (y, h_T, c_T)``: one forward
  layer-direction of the plain LSTM (no projection, layer norm, peepholes, masks or lengths) from
  the raw input. Which kernel runs is chosen when it runs, from the real batch size, as eager
  ``auto`` chooses: torch's oneDNN LSTM above ``small_lstm`` (batch x hidden, ``fused_cpu.SMALL_LSTM``), else the
  projection and the fused loop. A compiled graph cannot make that choice itself (the batch is
  symbolic), and always taking the fused loop made a compiled 2-layer LSTM at (100, 64, 256, 256)
  1.16x slower than eager (benchmarks/compile.py). Inference only: training takes ``fused_rnn_train``;
- ``rnnkit::fused_rnn_train(same arguments as fused_rnn, layout) -> (y, h_T, c_T, saved)``: ``saved``
  the kernel's buffers for backward, each (T, B, ...) or empty (undefined, or the same buffer as an
  earlier one), as ``layout`` says (:func:`layout_codes`; the kernel checks it);
  ``rnnkit::fused_rnn_backward(family, options, names, dy, dh, dc, saved, layout, gx, h0, c0, params,
  rmask, zh, zc, lengths, reverse) -> (dgx, dh0, dc0, dparams)``;
- ``rnnkit::scan_backward(family, act_g, gx, h0, y, dy, dh, z, lengths, reverse) -> (dgx, dh0)``;
- ``rnnkit::project(x, w, b) -> gx`` (``x W^T (+ b)``, differentiable) and
  ``rnnkit::project_backward(dgx, x, w, need_dx, need_dw, need_db) -> (dx, dw, db)`` (empty where
  not needed).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor
from torch.utils._python_dispatch import _disable_current_modes

Opt = Tensor | None

SCHEMAS = {
    "fused_cpu": {
        "fused_rnn": "(str family, str options, str names, Tensor gx, Tensor h0, Tensor? c0, Tensor[] params, "
                     "Tensor? rmask, Tensor? zh, Tensor? zc, Tensor? lengths, bool reverse) "
                     "-> (Tensor, Tensor, Tensor)",
        "lstm_layer": "(str options, Tensor x, Tensor h0, Tensor c0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, "
                      "Tensor? b_hh, int small_lstm) -> (Tensor, Tensor, Tensor)",
        "fused_rnn_train": "(str family, str options, str names, Tensor gx, Tensor h0, Tensor? c0, "
                           "Tensor[] params, Tensor? rmask, Tensor? zh, Tensor? zc, Tensor? lengths, "
                           "bool reverse, int[] layout) -> (Tensor, Tensor, Tensor, Tensor[])",
        "fused_rnn_backward": "(str family, str options, str names, Tensor dy, Tensor dh, Tensor? dc, "
                              "Tensor[] saved, int[] layout, Tensor gx, Tensor h0, Tensor? c0, "
                              "Tensor[] params, Tensor? rmask, Tensor? zh, Tensor? zc, Tensor? lengths, "
                              "bool reverse) -> (Tensor, Tensor, Tensor, Tensor[])",
        "project": "(Tensor x, Tensor w, Tensor? b) -> Tensor",
        "project_backward": "(Tensor dgx, Tensor x, Tensor w, bool need_dx, bool need_dw, bool need_db) "
                            "-> (Tensor, Tensor, Tensor)",
    },
    "scan": {
        "scan": "(int family, bool act_g, Tensor gx, Tensor h0, Tensor? z, Tensor? lengths, bool reverse) "
                "-> (Tensor, Tensor)",
        "scan_backward": "(int family, bool act_g, Tensor gx, Tensor h0, Tensor y, Tensor dy, Tensor? dh, "
                         "Tensor? z, Tensor? lengths, bool reverse) -> (Tensor, Tensor)",
    },
}

_LIB = torch.library.Library("rnnkit", "FRAGMENT")


def capturing() -> bool:
    """True while ``torch.compile`` or ``torch.export`` records the call (then the executors call the
    kernels through these operators)."""
    return torch.compiler.is_compiling()


def _ext(name: str):
    from rnnkit._ext import load_extension

    module, reason = load_extension(name)
    if module is None:
        raise RuntimeError(f"rnnkit's {name} extension is unavailable: {reason}")
    return module


def _tensors(args) -> list[Tensor]:
    flat = [a for arg in args for a in (arg if isinstance(arg, (list, tuple)) else (arg,))]
    return [a for a in flat if isinstance(a, Tensor)]


def _stand_in(extension: str, name: str):
    """The operator's kernel until ``extension`` is loaded: loads it (its C++ CPU and autograd kernels
    then take over: a direct registration beats this CompositeExplicitAutograd one) and calls the
    operator again. Autograd could not have recorded this first call, so it refuses one that needs it."""
    def kernel(*args):
        _ext(extension)
        if torch.is_grad_enabled() and any(t.requires_grad for t in _tensors(args)):
            raise RuntimeError(
                f"rnnkit::{name} was called with tensors that require grad before rnnkit's {extension} "
                f"extension was loaded; call rnnkit.executors.custom_ops.load_operators() first")
        return getattr(torch.ops.rnnkit, name).default(*args)

    return kernel


for _extension, _ops in SCHEMAS.items():
    for _name, _schema in _ops.items():
        _LIB.define(_name + _schema)
        _LIB.impl(_name, _stand_in(_extension, _name), "CompositeExplicitAutograd")


def load_operators() -> None:
    """Load the extensions, whose C++ kernels the operators run (idempotent)."""
    for extension in SCHEMAS:
        _ext(extension)


def encode_options(options: dict[str, str]) -> str:
    """The cell's options in one string for ``fused_rnn`` (its schema takes no dict)."""
    return ";".join(f"{name}={value}" for name, value in options.items())


def _decode_options(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.split(";") if item)


@torch.library.register_fake("rnnkit::fused_rnn", lib=_LIB)
def _fused_rnn_fake(family, options, names, gx, h0, c0, params, rmask, zh, zc, lengths, reverse):
    T, B = gx.shape[0], gx.shape[1]
    c = h0.new_empty(0) if c0 is None else c0.new_empty(B, c0.shape[-1])
    return gx.new_empty(T, B, h0.shape[-1]), h0.new_empty(B, h0.shape[-1]), c


@torch.library.register_fake("rnnkit::scan", lib=_LIB)
def _(family, act_g, gx, h0, z, lengths, reverse):
    T, B = gx.shape[0], gx.shape[1]
    return gx.new_empty(T, B, h0.shape[-1]), h0.new_empty(B, h0.shape[-1])


@torch.library.register_fake("rnnkit::lstm_layer", lib=_LIB)
def _(options, x, h0, c0, w_ih, w_hh, b_ih, b_hh, small_lstm):
    T, B, H = x.shape[0], x.shape[1], w_hh.shape[1]
    return x.new_empty(T, B, H), x.new_empty(B, H), x.new_empty(B, H)


# --- training: the forward keeps the kernel's buffers as outputs, the backward is an operator too --


_Layout = tuple["tuple[int, ...] | int | None", ...]


@functools.cache
def _saved_layout(family: str, options: str, names: str, gx_width: int, p: int, c: int | None,
                  shapes: tuple[tuple[int, ...], ...], rmask: bool, zh: int | None, zc: int | None,
                  dtype: torch.dtype) -> _Layout:
    """The buffers ``fused_cpu.forward`` keeps for backward, one entry each: the shape after (T, B)
    of a buffer of its own, the index of an earlier buffer it is (the LSTM's ``h_{t-1} * mask`` is
    ``h_{t-1}`` itself without a recurrent mask), or None (undefined: the option is off). Read off
    the kernel itself on a (T=2, B=3) problem of the same options, so that the fake implementation
    follows the C++ layout exactly (``zh``/``zc``: None, or the zoneout weight's number of dims)."""
    T, B = 2, 3

    def zone(dims: int | None, n: int) -> Tensor | None:
        return None if dims is None else torch.full((T, B, n) if dims else (), 0.25, dtype=dtype)

    # real tensors even while a fake implementation asks (fake, functional and tracing modes off)
    with _disable_current_modes(), torch.no_grad():
        probe = [torch.full(s, 0.5, dtype=dtype) for s in shapes]
        out = _ext("fused_cpu").forward(
            family, _decode_options(options), torch.full((T, B, gx_width), 0.1, dtype=dtype),
            torch.zeros(B, p, dtype=dtype), None if c is None else torch.zeros(B, c, dtype=dtype),
            dict(zip(names.split(",") if names else [], probe, strict=True)),
            torch.ones(B, p, dtype=dtype) if rmask else None, zone(zh, p), zone(zc, c or 0), None,
            False, False, True)[4:]
    layout: list[tuple[int, ...] | int | None] = []
    for i, t in enumerate(out):
        if t is None:
            layout.append(None)
            continue
        same = [j for j in range(i) if out[j] is not None and out[j].data_ptr() == t.data_ptr()]
        if same:
            layout.append(same[0])
            continue
        if tuple(t.shape[:2]) != (T, B):  # the fake implementation assumes (T, B, ...) buffers
            raise NotImplementedError(f"fused_cpu {family}: a saved buffer of shape {tuple(t.shape)}")
        layout.append(tuple(t.shape[2:]))
    return tuple(layout)


def _layout_key(gx: Tensor, h0: Tensor, c0: Opt, params: list[Tensor], rmask: Opt, zh: Opt, zc: Opt
                ) -> tuple:
    """What the layout depends on besides the family, options and names (widths, never T or B)."""
    return (int(gx.shape[-1]), int(h0.shape[-1]), None if c0 is None else int(c0.shape[-1]),
            tuple(tuple(int(d) for d in t.shape) for t in params), rmask is not None,
            None if zh is None else zh.dim(), None if zc is None else zc.dim(), gx.dtype)


def _layout_of(family: str, options: str, names: str, gx: Tensor, h0: Tensor, c0: Opt,
               params: list[Tensor], rmask: Opt, zh: Opt, zc: Opt) -> _Layout:
    return _saved_layout(family, options, names, *_layout_key(gx, h0, c0, params, rmask, zh, zc))


OWN_BUFFER, UNDEFINED_BUFFER = -1, -2  # layout codes (csrc/fused_cpu/operators.cpp)


def layout_codes(layout: _Layout) -> list[int]:
    """Per buffer -1 (its own), -2 (undefined) or the index of the earlier buffer it is."""
    return [OWN_BUFFER if isinstance(kind, tuple) else UNDEFINED_BUFFER if kind is None else kind
            for kind in layout]


@torch.compiler.assume_constant_result  # graph capture calls it (constants in, a constant out)
def _train_layout(family: str, options: str, names: str, gx_width: int, p: int, c: int | None,
                  shapes: tuple[tuple[int, ...], ...], rmask: bool, zh: int | None, zc: int | None,
                  dtype: torch.dtype) -> tuple[int, ...]:
    return tuple(layout_codes(_saved_layout(family, options, names, gx_width, p, c, shapes, rmask, zh,
                                            zc, dtype)))


def train_layout(family: str, options: str, names: str, gx: Tensor, h0: Tensor, c0: Opt,
                 params: list[Tensor], rmask: Opt, zh: Opt, zc: Opt) -> list[int]:
    """``fused_rnn_train``'s ``layout`` argument for these arguments."""
    return list(_train_layout(family, options, names, *_layout_key(gx, h0, c0, params, rmask, zh, zc)))


@torch.library.register_fake("rnnkit::fused_rnn_train", lib=_LIB)
def _(family, options, names, gx, h0, c0, params, rmask, zh, zc, lengths, reverse, layout):
    y, h, c = _fused_rnn_fake(family, options, names, gx, h0, c0, params, rmask, zh, zc, lengths, reverse)
    T, B = gx.shape[0], gx.shape[1]
    shapes = _layout_of(family, options, names, gx, h0, c0, params, rmask, zh, zc)
    if layout_codes(shapes) != list(layout):
        raise ValueError(f"fused_rnn_train: layout {list(layout)} is not the kernel's {layout_codes(shapes)}")
    return y, h, c, [gx.new_empty(T, B, *kind) if isinstance(kind, tuple) else gx.new_empty(0)
                     for kind in shapes]


@torch.library.register_fake("rnnkit::fused_rnn_backward", lib=_LIB)
def _(family, options, names, dy, dh, dc, saved, layout, gx, h0, c0, params, rmask, zh, zc, lengths,
      reverse):
    dc0 = c0.new_empty(c0.shape) if c0 is not None else h0.new_empty(0)
    return gx.new_empty(gx.shape), h0.new_empty(h0.shape), dc0, [t.new_empty(t.shape) for t in params]


@torch.library.register_fake("rnnkit::scan_backward", lib=_LIB)
def _(family, act_g, gx, h0, y, dy, dh, z, lengths, reverse):
    return gx.new_empty(gx.shape), h0.new_empty(h0.shape)


@torch.library.register_fake("rnnkit::project", lib=_LIB)
def _(x, w, b):
    return x.new_empty(*x.shape[:-1], w.shape[0])


@torch.library.register_fake("rnnkit::project_backward", lib=_LIB)
def _(dgx, x, w, need_dx, need_dw, need_db):
    empty = x.new_empty(0)
    return (x.new_empty(x.shape) if need_dx else empty, w.new_empty(w.shape) if need_dw else x.new_empty(0),
            w.new_empty(w.shape[0]) if need_db else x.new_empty(0))
