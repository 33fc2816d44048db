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

- ``rnnkit::fused_rnn(family, gx, h0, w_hh, b_hh, ln_hh_w, ln_hh_b, modrelu_b, rmask, zh, lengths,
  reverse) -> (y, h_T)``: Elman (tanh, relu, modReLU) and GRU;
- ``rnnkit::fused_lstm(gx, h0, c0, w_hh, b_ih, b_hh, ln_ih_w, ln_ih_b, ln_hh_w, ln_hh_b, ln_c_w,
  ln_c_b, peep_i, peep_f, peep_o, w_hr, rmask, zh, zc, lengths, reverse) -> (y, h_T, c_T)``;
- ``rnnkit::scan(family, act_g, gx, h0, z, lengths, reverse) -> (y, h_T)``: minGRU and minLSTM.
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


@torch.library.custom_op("rnnkit::fused_rnn", mutates_args=())
def fused_rnn(family: int, gx: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Opt, ln_hh_w: Opt,
              ln_hh_b: Opt, modrelu_b: Opt, rmask: Opt, zh: Opt, lengths: Opt,
              reverse: bool) -> tuple[Tensor, Tensor]:
    y, h = _ext("fused_cpu").forward(
        family, gx.contiguous(), h0.contiguous(), None, w_hh.contiguous(), _contiguous(b_hh),
        _contiguous(ln_hh_w), _contiguous(ln_hh_b), None, None, _contiguous(modrelu_b), None, None,
        None, _contiguous(rmask), _contiguous(zh), None, lengths, reverse, False)[:2]
    return y, h


@fused_rnn.register_fake
def _(family, gx, h0, w_hh, b_hh, ln_hh_w, ln_hh_b, modrelu_b, rmask, zh, lengths, reverse):
    T, B = gx.shape[0], gx.shape[1]
    return gx.new_empty(T, B, h0.shape[-1]), h0.new_empty(B, h0.shape[-1])


@torch.library.custom_op("rnnkit::fused_lstm", mutates_args=())
def fused_lstm(gx: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor, b_ih: Opt, b_hh: Opt,
               ln_ih_w: Opt, ln_ih_b: Opt, ln_hh_w: Opt, ln_hh_b: Opt, ln_c_w: Opt, ln_c_b: Opt,
               peep_i: Opt, peep_f: Opt, peep_o: Opt, w_hr: Opt, rmask: Opt, zh: Opt, zc: Opt,
               lengths: Opt, reverse: bool) -> tuple[Tensor, Tensor, Tensor]:
    tensors = [_contiguous(t) for t in (w_hh, b_ih, b_hh, ln_ih_w, ln_ih_b, ln_hh_w, ln_hh_b,
                                         ln_c_w, ln_c_b, peep_i, peep_f, peep_o, w_hr, rmask, zh, zc)]
    y, h, c = _ext("fused_cpu").lstm_forward(
        gx.contiguous(), h0.contiguous(), c0.contiguous(), *tensors, lengths, reverse, False,
        False)[:3]
    return y, h, c


@fused_lstm.register_fake
def _(gx, h0, c0, w_hh, b_ih, b_hh, ln_ih_w, ln_ih_b, ln_hh_w, ln_hh_b, ln_c_w, ln_c_b, peep_i,
      peep_f, peep_o, w_hr, rmask, zh, zc, lengths, reverse):
    T, B = gx.shape[0], gx.shape[1]
    return (gx.new_empty(T, B, h0.shape[-1]), h0.new_empty(B, h0.shape[-1]),
            c0.new_empty(B, c0.shape[-1]))


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
