"""The cell contract: the math of one time step, separated from how it runs over time.

A cell spec is a small frozen dataclass. It holds no tensors; parameters travel as a
``dict[str, Tensor]`` keyed by torch.nn's names (``weight_ih``, ``weight_hh``, ``bias_ih``,
``bias_hh``, ``weight_hr``, plus the family's extras). Executors call three things:

- :meth:`CellSpec.project_input`: the input projection for *all* time steps at once (one GEMM),
- :meth:`CellSpec.step`: the sequential part, ``state_t = step(params, gx_t, state_{t-1})``,
- :meth:`CellSpec.initial_state`: zeros of the right shapes.

The output of a step is always ``state[0]`` (``h``; for a projected LSTM the projected ``h``).
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

State = tuple[Tensor, ...]
Params = dict[str, Tensor]
Gates = dict[str, Tensor]

INIT_SCHEMES = ("torch", "orthogonal", "chrono")


@dataclass(frozen=True)
class InitOptions:
    """How to initialise a cell's parameters.

    - ``scheme="torch"``: every tensor ~ U(-1/sqrt(H), 1/sqrt(H)), as torch.nn does.
    - ``scheme="orthogonal"``: as torch, then each gate block of ``weight_hh`` orthogonal
      (Saxe et al. 2014) and biases zero.
    - ``scheme="chrono"``: as torch, then the gate biases that set the memory time scale follow
      Tallec & Ollivier 2018, "Can recurrent neural networks warp time?":
      b_f ~ log(U[1, T_max - 1]) and b_i = -b_f for the LSTM (b_z likewise for the GRU).
      ``chrono_tmax`` is T_max, the longest dependency the network should hold.
    - ``forget_bias``: if set, the LSTM forget-gate bias starts at this value
      (Gers et al. 2000; Jozefowicz et al. 2015 recommend 1.0).
    """

    scheme: str = "torch"
    forget_bias: float | None = None
    chrono_tmax: float = 1000.0

    def __post_init__(self) -> None:
        if self.scheme not in INIT_SCHEMES:
            raise ValueError(
                f"init must be one of {', '.join(repr(s) for s in INIT_SCHEMES)}, got {self.scheme!r}"
            )
        if self.chrono_tmax <= 2:
            raise ValueError(f"chrono_tmax must be > 2, got {self.chrono_tmax}")


@dataclass(frozen=True)
class CellSpec(ABC):
    """Base of every cell family: sizes and the options that change its equations."""

    input_size: int
    hidden_size: int
    bias: bool = True

    #: registry name, e.g. "lstm"
    name: ClassVar[str]
    #: number of gate blocks stacked in weight_ih / weight_hh (4 for LSTM, 3 for GRU, 1 for Elman)
    num_gates: ClassVar[int]

    def __post_init__(self) -> None:
        if not isinstance(self.hidden_size, int) or isinstance(self.hidden_size, bool):
            raise TypeError(
                f"hidden_size should be of type int, got: {type(self.hidden_size).__name__}"
            )
        if self.hidden_size <= 0:
            raise ValueError("hidden_size must be greater than zero")
        if not isinstance(self.input_size, int) or self.input_size < 0:
            raise ValueError(f"input_size must be a non-negative int, got {self.input_size!r}")
        for f in dataclasses.fields(self):
            if f.name not in ("input_size", "hidden_size", "bias"):  # bias: any truthy value, as torch.nn
                _check_option_type(type(self).__name__, f.name, str(f.type), getattr(self, f.name))

    # ---- shapes -------------------------------------------------------------------------
    @property
    def output_size(self) -> int:
        """Size of ``h`` (the step output); the LSTM's ``proj_size`` changes it."""
        return self.hidden_size

    def state_sizes(self) -> tuple[int, ...]:
        """Feature size of each state component, ``(h,)`` or ``(h, c)``."""
        return (self.output_size,)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter names and shapes, in torch.nn's registration order."""
        gh = self.num_gates * self.hidden_size
        shapes: dict[str, tuple[int, ...]] = {
            "weight_ih": (gh, self.input_size),
            "weight_hh": (gh, self.output_size),
        }
        if self.bias:
            shapes["bias_ih"] = (gh,)
            shapes["bias_hh"] = (gh,)
        return shapes

    # ---- capability ---------------------------------------------------------------------
    def unsupported_by_torch(self) -> str | None:
        """Why torch's own RNN kernels cannot run this cell, or None if they can."""
        return None

    def torch_mode(self) -> str | None:
        """torch's RNN mode that computes this family's equations (``torch.nn.RNNBase.mode``: "LSTM",
        "GRU", "RNN_TANH", "RNN_RELU"), or None if torch.nn has no equivalent. Options torch lacks are
        refused by :meth:`unsupported_by_torch`. Only a class that defines this itself gets torch's
        kernels (a subclass may have changed the equations)."""
        return None

    def kernel_family(self) -> str | None:
        """The compiled kernel family that runs this cell's equations (a header under ``csrc/``), or
        None if only the Python executors can run it. Executors map cells to kernels by this name,
        never by the spec's class."""
        return None

    # ---- init ---------------------------------------------------------------------------
    @torch.no_grad()
    def reset_parameters(self, params: Params, init: InitOptions = InitOptions()) -> None:
        """Initialise ``params`` in place (torch's U(+-1/sqrt(H)), then the scheme's changes)."""
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0
        for p in params.values():
            p.uniform_(-bound, bound)
        self._reset_extras(params)
        if init.scheme == "orthogonal":
            w = params["weight_hh"]
            for block in w.view(self.num_gates, self.hidden_size, -1):
                torch.nn.init.orthogonal_(block)
            for name in ("bias_ih", "bias_hh"):
                if name in params:
                    params[name].zero_()
        elif init.scheme == "chrono":
            self._chrono_init(params, init.chrono_tmax)
        if init.forget_bias is not None:
            self._set_forget_bias(params, init.forget_bias)

    def _reset_extras(self, params: Params) -> None:
        """Families with layer norm etc. reset those parameters here."""

    def _chrono_init(self, params: Params, tmax: float) -> None:
        raise ValueError(f"init='chrono' is defined for gated cells (lstm, gru), not {self.name!r}")

    def _set_forget_bias(self, params: Params, value: float) -> None:
        raise ValueError(f"forget_bias applies to the LSTM's forget gate, not to {self.name!r}")

    # ---- math ---------------------------------------------------------------------------
    def recurrent_weight(self, params: Params) -> Tensor | None:
        """``weight_hh`` as the step uses it (a family that constrains it, e.g. IndRNN's clamp,
        overrides this); kernels take it from here, so autograd sees the constraint. None without one."""
        return params.get("weight_hh")

    def project_input(self, params: Params, x: Tensor) -> Tensor:
        """Input projection for every step at once: ``x (..., I) -> gx (..., G*H)``."""
        return torch.nn.functional.linear(x, params["weight_ih"], params.get("bias_ih"))

    @abstractmethod
    def gates(
        self, params: Params, gx_t: Tensor, state: State, recurrent_mask: Tensor | None = None
    ) -> Gates:
        """The named activations of one time step (B, n each): every gate :meth:`gate_kinds` lists,
        plus whatever else :meth:`state_from_gates` needs. ``recurrent_mask`` (B, output_size), if
        given, multiplies ``h_{t-1}`` where it enters the recurrent weights (Gal & Ghahramani's
        recurrent dropout)."""

    @abstractmethod
    def state_from_gates(self, params: Params, gates: Gates, state: State) -> State:
        """The new state from this step's :meth:`gates` and the previous ``state``."""

    def gate_kinds(self) -> dict[str, str]:
        """The entries of :meth:`gates` that diagnostics summarise, with the nonlinearity that made
        each ("sigmoid", "tanh" or "relu")."""
        return {}

    def recurrent_blocks(self) -> tuple[str, ...]:
        """Names of the gate blocks stacked in ``weight_hh`` (rows), in order."""
        return ("h",) if self.num_gates == 1 else tuple(f"gate{i}" for i in range(self.num_gates))

    def step(
        self, params: Params, gx_t: Tensor, state: State, recurrent_mask: Tensor | None = None
    ) -> State:
        """One time step: ``state_from_gates(gates(...))`` (so the gates diagnostics read are the
        ones the step used)."""
        return self.state_from_gates(params, self.gates(params, gx_t, state, recurrent_mask), state)

    def initial_state(self, batch: int, *, device=None, dtype=None) -> State:
        return tuple(torch.zeros(batch, n, device=device, dtype=dtype) for n in self.state_sizes())


_OPTION_TYPES: dict[str, tuple[type, ...]] = {"bool": (bool,), "int": (int,), "float": (int, float), "str": (str,)}


def _check_option_type(owner: str, name: str, annotation: str, value: object) -> None:
    """Options are validated once, here, from their annotations (``bool``, ``int``, ``float``, ``str``,
    optionally ``| None``): a config file or a flag cannot slip a string in for a bool."""
    kinds = [k.strip() for k in annotation.split("|")]
    if value is None and "None" in kinds:
        return
    allowed = tuple(t for k in kinds for t in _OPTION_TYPES.get(k, ()))
    if not allowed:
        return  # an annotation this check does not know: the family validates it
    if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
        raise TypeError(f"{owner}.{name} must be {' or '.join(kinds)}, got {type(value).__name__} {value!r}")


def own_declaration(cell: CellSpec, method: str) -> str | None:
    """``cell.<method>()`` (``torch_mode``, ``kernel_family``) when ``type(cell)`` itself defines that
    method, else None: a subclass that inherits it may have changed the equations, so it gets no
    compiled kernel until it declares one, saying its equations are the kernel's."""
    return getattr(cell, method)() if method in vars(type(cell)) else None


def recurrent_input(h: Tensor, recurrent_mask: Tensor | None) -> Tensor:
    """``h_{t-1}`` as seen by the recurrent weights (dropped out if a mask is given)."""
    return h if recurrent_mask is None else h * recurrent_mask


def layer_norm(x: Tensor, params: Params, prefix: str, eps: float = 1e-5) -> Tensor:
    """Layer norm over the last dimension with gain ``{prefix}_weight`` and bias ``{prefix}_bias``."""
    w = params[f"{prefix}_weight"]
    return torch.nn.functional.layer_norm(x, w.shape, w, params[f"{prefix}_bias"], eps)


def normed_linear(x: Tensor, params: Params, which: str, norm: bool) -> Tensor:
    """``W_which x + b_which``; with ``norm``, ``LN_which(W_which x) + b_which`` (bias after the norm,
    as Ba et al. 2016). Without a norm the bias goes inside ``linear``, which keeps autocast's dtype."""
    weight, bias = params[f"weight_{which}"], params.get(f"bias_{which}")
    if not norm:
        return torch.nn.functional.linear(x, weight, bias)
    y = layer_norm(torch.nn.functional.linear(x, weight), params, f"layer_norm_{which}")
    return y if bias is None else y + bias


def chrono_bias(n: int, tmax: float, like: Tensor) -> Tensor:
    """log(U[1, T_max - 1]) (Tallec & Ollivier 2018, eq. 16)."""
    return torch.log(torch.empty(n, dtype=like.dtype, device=like.device).uniform_(1.0, tmax - 1.0))
