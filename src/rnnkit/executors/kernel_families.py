"""Which compiled kernel runs a cell: the family its spec names by ``CellSpec.kernel_family()``
(``"elman_tanh"``, ``"lstm"``, ``"indrnn"``, ``"mingru"`` ...), never its class; and the cell's
options as the kernels read them (by name).

The guard against a silently wrong answer: a kernel runs a cell only if the cell's *own class*
declares ``kernel_family``. A subclass that inherits it may have changed the equations (another
``gates()``); it gets no kernel (the reference executor runs it) until it declares one itself, which
says that its equations are the kernel's.
"""

from __future__ import annotations

import contextlib
import dataclasses

from rnnkit.cells.base import CellSpec, own_declaration

_SIZES = ("input_size", "hidden_size", "bias")
_options_cache: dict[CellSpec, dict[str, str]] = {}


def declared_kernel_family(cell: CellSpec) -> str | None:
    """``cell.kernel_family()`` when ``type(cell)`` itself defines ``kernel_family``, else None."""
    return own_declaration(cell, "kernel_family")


def kernel_options(cell: CellSpec) -> dict[str, str]:
    """The cell's equation options (dataclass fields but the sizes, None left out) as strings: a
    kernel family reads the ones it needs by name (e.g. IndRNN's ``nonlinearity``)."""
    try:
        return _options_cache[cell]
    except (KeyError, TypeError):
        pass
    options = {f.name: str(getattr(cell, f.name)) for f in dataclasses.fields(cell)
               if f.name not in _SIZES and getattr(cell, f.name) is not None}
    with contextlib.suppress(TypeError):  # an unhashable option value: not cached
        _options_cache[cell] = options
    return options
