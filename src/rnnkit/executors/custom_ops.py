"""The compiled kernels' inference entry points as ``torch.library`` custom operators.

Graph capture (``torch.compile``, ``torch.export``) cannot look inside a pybind11 call: it breaks the
graph there, and an exported program cannot hold it at all. As custom operators with fake (meta)
implementations, the kernels become single graph nodes whose output shapes are known symbolically:
``torch.compile(fullgraph=True)`` and ``torch.export`` with dynamic batch and time dimensions.

Only the forward without autograd is an operator (what inference and deployment run): training keeps
the autograd Functions of :mod:`rnnkit.executors.fused_cpu` and :mod:`rnnkit.executors.scan`, which
hold the kernels' buffers for backward. Eager calls go straight to the extension (an operator's
dispatch costs microseconds a call); the executors call these operators only while a graph is being
captured (:func:`capturing`), and project the input with ``torch.nn.functional.linear`` then (the
compiler's own GEMM).

Operators (all return new tensors, none aliases an input):

- ``rnnkit::fused_rnn(family, options, names, gx, h0, c0, params, rmask, zh, zc, lengths, reverse)
  -> (y, h_T, c_T)``: every fused kernel family (``CellSpec.kernel_family()``); ``options`` the cell's
  options as ``"name=value;..."``, ``names`` the parameters' names as ``"weight_hh,bias_hh,..."``
  in the order of the tensor list ``params`` (the schema has no dict or string list); ``c0`` and
  ``c_T`` (empty) only for the two-state LSTM;
- ``rnnkit::scan(family, act_g, gx, h0, z, lengths, reverse) -> (y, h_T)``: minGRU and minLSTM;
- ``rnnkit::lstm_layer(options, x, h0, c0, w_ih, w_hh, b_ih, b_hh) -> (y, h_T, c_T)``: one forward
  layer-direction of the plain LSTM (no projection, layer norm, peepholes, masks or lengths) from
  the raw input. Which kernel runs is chosen when it runs, from the real batch size, as eager
  ``auto`` chooses: torch's oneDNN LSTM above ``fused_cpu.SMALL_LSTM`` (batch x hidden), else the
  projection and the fused loop. A compiled graph cannot make that choice itself (the batch is
  symbolic), and always taking the fused loop made a compiled 2-layer LSTM at (100, 64, 256, 256)
  1.16x slower than eager (benchmarks/compile.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

Opt = Tensor | None


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


def _contiguous(t: Opt) -> Opt:
    return None if t is None else t.contiguous()


def encode_options(options: dict[str, str]) -> str:
    """The cell's options in one string for ``fused_rnn`` (its schema takes no dict)."""
    return ";".join(f"{name}={value}" for name, value in options.items())


def _decode_options(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.split(";") if item)


@torch.library.custom_op("rnnkit::fused_rnn", mutates_args=())
def fused_rnn(family: str, options: str, names: str, gx: Tensor, h0: Tensor, c0: Opt,
              params: list[Tensor], rmask: Opt, zh: Opt, zc: Opt, lengths: Opt,
              reverse: bool) -> tuple[Tensor, Tensor, Tensor]:
    named = dict(zip(names.split(",") if names else [], (t.contiguous() for t in params), strict=True))
    y, h, c = _ext("fused_cpu").forward(
        family, _decode_options(options), gx.contiguous(), h0.contiguous(), _contiguous(c0), named,
        _contiguous(rmask), _contiguous(zh), _contiguous(zc), lengths, reverse, False, False)[:3]
    return y, h, c if c is not None else h0.new_empty(0)


@fused_rnn.register_fake
def _(family, options, names, gx, h0, c0, params, rmask, zh, zc, lengths, reverse):
    T, B = gx.shape[0], gx.shape[1]
    c = h0.new_empty(0) if c0 is None else c0.new_empty(B, c0.shape[-1])
    return gx.new_empty(T, B, h0.shape[-1]), h0.new_empty(B, h0.shape[-1]), c


@torch.library.custom_op("rnnkit::scan", mutates_args=())
def scan(family: int, act_g: bool, gx: Tensor, h0: Tensor, z: Opt, lengths: Opt,
         reverse: bool) -> tuple[Tensor, Tensor]:
    y, h = _ext("scan").forward(family, act_g, gx.contiguous(), h0.contiguous(), _contiguous(z),
                                lengths, reverse)
    return y, h


@scan.register_fake
def _(family, act_g, gx, h0, z, lengths, reverse):
    T, B = gx.shape[0], gx.shape[1]
    return gx.new_empty(T, B, h0.shape[-1]), h0.new_empty(B, h0.shape[-1])


@torch.library.custom_op("rnnkit::lstm_layer", mutates_args=())
def lstm_layer(options: str, x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Opt,
               b_hh: Opt) -> tuple[Tensor, Tensor, Tensor]:
    from rnnkit.executors.fused_cpu import SMALL_LSTM

    if x.shape[1] * w_hh.shape[1] > SMALL_LSTM:
        weights = [w_ih, w_hh] + ([b_ih, b_hh] if b_ih is not None else [])
        y, h, c = torch._VF.lstm(x, (h0[None], c0[None]), weights, b_ih is not None, 1, 0.0, False, False, False)
        return y, h[0], c[0]
    named = {name: t.contiguous() for name, t in (("weight_hh", w_hh), ("bias_ih", b_ih), ("bias_hh", b_hh))
             if t is not None}
    gx = torch.nn.functional.linear(x, w_ih)
    y, h, c = _ext("fused_cpu").forward(
        "lstm", _decode_options(options), gx.contiguous(), h0.contiguous(), c0.contiguous(), named,
        None, None, None, None, False, False, False)[:3]
    return y, h, c


@lstm_layer.register_fake
def _(options, x, h0, c0, w_ih, w_hh, b_ih, b_hh):
    T, B, H = x.shape[0], x.shape[1], w_hh.shape[1]
    return x.new_empty(T, B, H), x.new_empty(B, H), x.new_empty(B, H)
