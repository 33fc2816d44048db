"""The fast streaming step: one time step of a whole ``Recurrent`` stack in one C++ call.

``Recurrent.step(x_t, state)`` at batch 1 is dominated by per-op overhead when it runs the cell's
Python ``step`` (a dozen ATen calls per layer, each a few microseconds). The ``fused_cpu``
extension's ``Stepper``, bound once to the module's parameters (:func:`stepper`), does every layer's
whole step in one call: both projections (for a few rows a single pass of row dot products over
``W_ih`` and ``W_hh``, eight rows at a time; BLAS for larger batches), layer norms, biases,
peepholes, the gates, the projection, zoneout's expectation and residual connections, with the same
pointwise code as the fused forward pass.

It runs when all of these hold (else ``Recurrent.step`` takes the Python path, which is the
specification and supports autograd):

- no gradient is needed: grad mode is off (``torch.no_grad()`` / ``torch.inference_mode()``), or
  neither the input, the state nor any parameter requires grad (the C++ step has no backward);
- the module is on the CPU in float32, float64 or bfloat16 (computed in float32 on float32 copies of
  the parameters, re-made when a parameter's version counter moves), and its cell is one the fused
  kernels cover
  (:func:`rnnkit.executors.fused_cpu.kernel_family`: Elman, LSTM with any options, GRU with or
  without layer norm, IndRNN);
- the ``fused_cpu`` extension is available (``RNNKIT_NO_EXT`` unset, a compiler at build time).

``step()`` already runs with evaluation semantics (zoneout by its expectation; the stochastic
regularisers refuse training mode), so the fast path needs no masks.

``Recurrent.step_precision = "int8"`` (set by :func:`rnnkit.quantize_step`) makes the Stepper take
int8 copies of the weights, quantized when it is built (``csrc/fused_cpu/int8_gemv.h``: per-row
symmetric weights, activations quantized at every step, int32 sums) and again when a weight's
version counter moves (an in-place update); a step the fast path cannot run raises instead of
running another precision.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.cells.base import State
from rnnkit.executors import fused_cpu
from rnnkit.executors.kernel_families import kernel_options
from rnnkit.executors.recompute import tracked

_DTYPES = (torch.float32, torch.float64, torch.bfloat16)
STEP_PRECISIONS = ("float", "int8")  # Recurrent.step_precision


def fast_step_refusal(module, x: Tensor, hx: State) -> str | None:
    """None if the module's :func:`stepper` can run this step of ``module`` (a ``Recurrent``), else
    why not."""
    if "parametrizations" in module._modules:  # torch.nn.utils.parametrize: recomputed per access
        return "a parametrized weight (torch.nn.utils.parametrize) is recomputed at every access"
    if torch._C._functorch.is_functorch_wrapped_tensor(x):
        return "torch.func transforms the input (the C++ step has no batching or autograd rule)"
    if not x.is_cpu or x.dtype not in _DTYPES:  # is_cpu: x.device.type costs 0.5 us a step
        return f"runs on CPU in float32/float64/bfloat16, not {x.device.type} {x.dtype}"
    if x.dtype != module._parameters["weight_ih_l0"].dtype:
        return "input and weights differ in dtype"
    if module.step_precision == "int8" and x.dtype != torch.float32:
        return f"the int8 step quantizes float32 modules, not {x.dtype}"
    if torch.is_grad_enabled() and (
        tracked(x) or any(map(tracked, hx)) or any(map(tracked, module.parameters()))
    ):
        return "gradients are required (the C++ step has no backward)"
    return _static_refusal(module)


def _static_refusal(module) -> str | None:
    """What does not change between steps: the cells and the extension (cached on the module)."""
    cached = module.__dict__.get("_fast_step_static")
    if cached is None or cached[0] is not module.cells:
        reason = None
        if any(fused_cpu.kernel_family(spec) is None for spec in module.cells):
            reason = f"no fused kernel for the {module.cell_name!r} cell"
        else:
            _, reason = fused_cpu._extension()
        cached = (module.cells, reason)
        module.__dict__["_fast_step_static"] = cached
    return cached[1]


def _layer(module, layer: int, as_float: bool) -> tuple[str, dict[str, str], dict[str, Tensor]]:
    """One layer as ``fused_cpu.Stepper`` takes it: its kernel family, its cell's options and its
    parameters by their cell names (the registered tensors themselves, contiguous; float32 copies of
    a bfloat16 module's if ``as_float``)."""
    registered = module._parameters  # a plain dict: no nn.Module.__getattr__ per parameter
    spec = module.cells[layer]
    names = module._param_names[layer][0]  # cell name -> the module's parameter name
    params = {name: (registered[full].detach().float() if as_float else registered[full]).contiguous()
              for name, full in names.items()}
    return fused_cpu.kernel_family(spec), kernel_options(spec), params


class Bfloat16Stepper:
    """A bfloat16 module's step: the float32 ``Stepper`` on float32 copies of its parameters, the
    input and state converted on the way in and the results rounded to bf16 on the way out (the step
    computes in float32, as the fused sequence loop does)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def step(self, x: Tensor, h: Tensor, c: Tensor | None = None) -> list[Tensor]:
        out = self.inner.step(x.float(), h.float(), None if c is None else c.float())
        return [t.to(torch.bfloat16) for t in out]


def stepper(module):
    """The module's ``fused_cpu.Stepper``, cached while its parameters are the same contiguous
    objects (so the bound tensors are the parameters themselves, updated in place by an optimiser;
    an int8 Stepper re-quantizes its weight copies when their version counters move)."""
    key = tuple(map(id, module._parameters.values()))
    precision = module.step_precision
    as_float = module._parameters["weight_ih_l0"].dtype == torch.bfloat16
    # copies (bf16's float32 ones) are current while the parameters' version counters stand still
    versions = tuple(p._version for p in module._parameters.values()) if as_float else None
    cached = module.__dict__.get("_fast_stepper")
    if (cached is not None and cached[0] == key and cached[1] == module.zoneout
            and cached[3] == precision and cached[4] == versions):
        return cached[2]
    ext, _ = fused_cpu._extension()
    zoneout = module.zoneout
    zh = float(zoneout[0])
    zc = float(zoneout[1]) if len(zoneout) > 1 else 0.0
    contiguous = all(p.is_contiguous() for p in module._parameters.values())
    layers = [_layer(module, layer, as_float) for layer in range(len(module.cells))]
    made = ext.Stepper(layers, zh, zc, bool(module.residual), precision == "int8")
    if as_float:
        made = Bfloat16Stepper(made)
    if contiguous:
        module.__dict__["_fast_stepper"] = (key, module.zoneout, made, precision, versions)
    return made
