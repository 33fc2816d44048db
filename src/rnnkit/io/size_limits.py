"""Size limits checked from a configuration before any tensor exists (issue #23).

A configuration is untrusted input (a shared ``config.json``, a typo on the command line):
``hidden 20000`` or ``num_layers 1000000`` used to end in a MemoryError traceback, a kill by the OS or
a long hang. :func:`check_size` is the one check every app (adding, text, forecast) and
:func:`rnnkit.load` run first. It estimates, as for an LSTM (4 gates, the largest built-in cell):

- parameters: ``4 * (h * (input + h) + 2h)`` for the first layer, ``4 * (2h * h + 2h)`` per further
  layer, plus the app's own (embeddings, heads);
- training memory: 16 bytes per parameter (float32 weights, gradients, two Adam moments) plus
  activations, ``seq_len * batch * 4h * 4 bytes * 2`` per layer (gates saved for the backward pass).

Refused, with one line naming the options and the limit: more than :data:`MAX_LAYERS` layers, more
than :data:`MAX_PARAMETERS` parameters, or a training estimate above the RAM available now
(``MemAvailable`` of ``/proc/meminfo``; elsewhere ``os.sysconf``). ``RNNKIT_ALLOW_LARGE=1`` in the
environment skips the check (the user asked for it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from rnnkit.errors import UserError

ALLOW_ENV = "RNNKIT_ALLOW_LARGE"
MAX_LAYERS = 1024
MAX_PARAMETERS = 10**9
GATES = 4
_BYTES_PER_PARAMETER = 16


class TooLarge(UserError):
    """A configuration asks for more parameters, layers or memory than the stated limits."""


def available_memory() -> int | None:
    """Bytes of RAM available now (None when the platform does not say)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def estimate_parameters(hidden: int, num_layers: int, input_size: int = 0, directions: int = 1) -> int:
    """Parameters of a ``num_layers``-deep recurrent stack of ``hidden`` units (4 gates, biases)."""
    first = GATES * (hidden * (input_size + hidden) + 2 * hidden)
    rest = GATES * (hidden * (directions * hidden + hidden) + 2 * hidden)
    return directions * (first + (num_layers - 1) * rest)


def check_size(hidden: Any, num_layers: Any, *, input_size: Any = 0, extra_parameters: int = 0, seq_len: int = 0,
               batch: int = 0, options: tuple[str, str] = ("--hidden", "--num-layers"), source: str = "") -> None:
    """Raise a one-line :class:`TooLarge` if this configuration exceeds the limits (module docstring).

    Values that are not positive integers are left to the configuration's own validation.
    ``options`` name the two settings in the message (a flag, or a config.json key).
    """
    if os.environ.get(ALLOW_ENV, "") not in ("", "0"):
        return
    if not all(_count(v) for v in (hidden, num_layers)) or not _count(input_size, zero=True):
        return
    where = f"{source}: " if source else ""
    fix = f"lower {options[0]} or {options[1]}, or set {ALLOW_ENV}=1 to try anyway"
    if num_layers > MAX_LAYERS:
        raise TooLarge(f"{where}{options[1]} {num_layers} is above the limit of {MAX_LAYERS} layers: {fix}")
    params = estimate_parameters(hidden, num_layers, input_size) + max(0, int(extra_parameters))
    what = f"{options[0]} {hidden} with {options[1]} {num_layers}"
    if params > MAX_PARAMETERS:
        raise TooLarge(f"{where}{what} gives about {params:.2g} parameters, above the limit of "
                       f"{MAX_PARAMETERS:.0e}: {fix}")
    need = params * _BYTES_PER_PARAMETER + max(0, seq_len) * max(0, batch) * GATES * hidden * 4 * 2 * num_layers
    free = available_memory()
    if free is not None and need > free:
        raise TooLarge(f"{where}{what} needs about {need / 2**30:.1f} GiB to train (parameters, gradients, "
                       f"optimiser state, activations), more than the {free / 2**30:.1f} GiB of RAM available: {fix}")


def check_model_config(config: Mapping[str, Any], source: str) -> None:
    """:func:`check_size` on a model's saved constructor config (``hidden``/``hidden_size``,
    ``num_layers``, ``input_size``, ``vocab_size`` x ``embedding_size``), as ``rnnkit.load`` reads it."""
    key = "hidden_size" if "hidden_size" in config else "hidden"
    hidden, layers = config.get(key), config.get("num_layers", 1)
    vocab, emb = config.get("vocab_size", 0), config.get("embedding_size") or hidden
    extra = 2 * vocab * emb if _count(vocab, zero=True) and _count(emb, zero=True) else 0
    check_size(hidden, layers, input_size=config.get("input_size", 0), extra_parameters=extra,
               options=(key, "num_layers"), source=source)


def _count(value: Any, zero: bool = False) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and (value >= 0 if zero else value > 0)
