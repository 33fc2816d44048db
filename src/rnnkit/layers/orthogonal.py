"""Orthogonal recurrent weights: ``W_hh = exp(A - A^T)``, kept exactly orthogonal while training.

An orthogonal ``W_hh`` neither shrinks nor grows the state it carries, so gradients through time
neither vanish nor explode through it; with the modReLU Elman cell (``rnn_modrelu``) this is the
expRNN of Lezcano-Casado & Martinez-Rubio 2019 ("Cheap orthogonal constraints in neural networks"),
which learns the copy-memory task at T = 1000 where gated cells stay at the memoryless baseline
(docs/benchmarks.md). The constraint is torch's own parametrization
(:func:`torch.nn.utils.parametrizations.orthogonal` with the matrix exponential of a skew-symmetric
matrix and dynamic trivialization), so every executor sees an ordinary weight and autograd carries
its gradient to the skew-symmetric parameter.
"""

from __future__ import annotations

import math

import torch
from torch.nn.utils import parametrizations

from rnnkit.layers.recurrent import Recurrent

INITS = ("rotations", "keep")


def rotation_blocks(n: int, generator: torch.Generator | None = None, dtype=None) -> torch.Tensor:
    """Block-diagonal 2x2 rotations with angles ~ U[-pi, pi] (and a 1 for odd n): the orthogonal
    initialisation of Henaff, Szlam & LeCun 2016, whose eigenvalues spread over the unit circle."""
    w = torch.zeros(n, n, dtype=dtype)
    angles = (torch.rand(n // 2, generator=generator, dtype=torch.float64) * 2 - 1) * math.pi
    for k, a in enumerate(angles.tolist()):
        c, s = math.cos(a), math.sin(a)
        w[2 * k : 2 * k + 2, 2 * k : 2 * k + 2] = torch.tensor([[c, -s], [s, c]], dtype=w.dtype)
    if n % 2:
        w[-1, -1] = 1.0
    return w


def orthogonal_recurrence(module: Recurrent, init: str = "rotations",
                          generator: torch.Generator | None = None) -> Recurrent:
    """Constrain every recurrent weight ``weight_hh_l{k}[_reverse]`` of ``module`` to be orthogonal.

    ``init="rotations"`` starts each from :func:`rotation_blocks`; ``"keep"`` from torch's projection
    of the current weight onto the orthogonal matrices (the Q of its QR factorisation). The weights
    must be square: Elman cells (``rnn_tanh``, ``rnn_relu``, ``rnn_modrelu``). Returns ``module``,
    whose ``weight_hh_*`` are then computed on access (``module.parametrizations``); ``step()`` takes
    the Python path for such a module.
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(map(repr, INITS))}, got {init!r}")
    names = [per["weight_hh"] for layer in module._param_names for per in layer]
    for name in names:
        w = getattr(module, name)
        if w.shape[0] != w.shape[1]:
            raise ValueError(
                f"{name} is {tuple(w.shape)}: an orthogonal recurrence needs a square W_hh "
                f"(an Elman cell without projection), not the {module.cell_name!r} cell's gate blocks"
            )
        parametrizations.orthogonal(module, name, orthogonal_map="matrix_exp")
        if init == "rotations":
            with torch.no_grad():
                rot = rotation_blocks(w.shape[0], generator, dtype=w.dtype).to(w.device)
                setattr(module, name, rot)
    return module
