"""How an option is declared: its type (the dataclass annotation), range, choices and help.

An app's options are a dataclass; each field carries ``opt(...)`` metadata::

    @dataclass
    class MyConfig:
        hidden: int = opt(32, min=1, help="units per layer")
        dropout: float = opt(0.0, min=0, lt=1)
        cell: str = opt("lstm", choices=cell_names)   # a callable: looked up when checked

A dataclass in a file the app cannot change gets its options from :func:`declare_options` instead.
Fields without a declaration are still typed (from the annotation) and floats must be finite.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

#: where ``opt`` keeps its spec in a field's metadata
META_KEY = "rnnkit"
#: no int option may exceed this: Python ints are unbounded, torch's and C++'s are 64-bit
INT_LIMIT = 2**53


@dataclass(frozen=True)
class Opt:
    """What one option allows. Bounds are inclusive (``min``/``max``) or exclusive (``gt``/``lt``);
    ``special`` values are allowed besides the range (``-1``: no limit); ``check`` returns why a value
    is refused, or None."""

    help: str = ""
    min: float | None = None
    max: float | None = None
    gt: float | None = None
    lt: float | None = None
    choices: tuple[Any, ...] | Callable[[], Iterable[Any]] | None = None
    special: tuple[Any, ...] = ()
    check: Callable[[Any], str | None] | None = None
    allowed: str | None = None  # the description of what is allowed, when ``check`` decides
    finite: bool = True

    def choice_list(self) -> tuple[Any, ...] | None:
        if self.choices is None:
            return None
        return tuple(self.choices() if callable(self.choices) else self.choices)

    def describe(self, kind: str) -> str:
        """What is allowed, in words: ``an integer >= 1``, ``one of: adam, sgd``."""
        if self.allowed:
            return self.allowed
        choices = self.choice_list()
        if choices is not None:
            return "one of: " + ", ".join(str(c) for c in choices)
        parts = []
        if self.gt is not None:
            parts.append(f"> {_num(self.gt)}")
        if self.min is not None:
            parts.append(f">= {_num(self.min)}")
        if self.lt is not None:
            parts.append(f"< {_num(self.lt)}")
        if self.max is not None:
            parts.append(f"<= {_num(self.max)}")
        text = KIND_WORDS.get(kind, kind) + (" " + " and ".join(parts) if parts else "")
        if self.special:
            text += " (or " + " or ".join(repr(s) for s in self.special) + ")"
        return text


KIND_WORDS = {"int": "an integer", "float": "a finite number", "str": "a string", "bool": "true or false",
              "list": "a list of strings"}


def _num(x: float) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() and abs(x) < 1e15 else str(x)


def opt(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING, **spec: Any) -> Any:
    """A dataclass field with an :class:`Opt` in its metadata (``opt(32, min=1, help=...)``)."""
    return dataclasses.field(default=default, default_factory=default_factory, metadata={META_KEY: Opt(**spec)})


_DECLARED: dict[type, dict[str, Opt]] = {}


def declare_options(cls: type, specs: dict[str, Opt]) -> None:
    """Declare (or override) the options of dataclass ``cls`` outside its definition."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(specs) - known)
    if unknown:  # a typo here would silently leave an option unchecked
        raise ValueError(f"{cls.__name__} has no field {unknown[0]!r}")
    _DECLARED.setdefault(cls, {}).update(specs)


def option_specs(cls: type) -> dict[str, Opt]:
    """Every field of ``cls`` with its :class:`Opt` (a default one where nothing is declared)."""
    declared = _DECLARED.get(cls, {})
    return {f.name: declared.get(f.name) or f.metadata.get(META_KEY) or Opt() for f in dataclasses.fields(cls)}
