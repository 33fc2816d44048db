"""Cell families by name, one table: ``make_cell("lstm", 10, 20, proj_size=5)``.

An entry is a spec class and the options its name fixes (``rnn_relu`` is the Elman class with
``nonlinearity="relu"``). Everything else about a family (its options as dataclass fields, parameters,
init, gates, torch equivalent, kernel) lives in its spec class, in its own file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rnnkit.cells.base import CellSpec, InitOptions
from rnnkit.cells.elman import ElmanSpec
from rnnkit.cells.gru import GRUSpec
from rnnkit.cells.indrnn import IndRNNSpec
from rnnkit.cells.lstm import LSTMSpec
from rnnkit.cells.mingru import MinGRUSpec
from rnnkit.cells.minlstm import MinLSTMSpec

SIZE_FIELDS = ("input_size", "hidden_size", "bias")


@dataclass(frozen=True)
class CellEntry:
    spec_class: type[CellSpec]
    preset: dict[str, Any] = field(default_factory=dict)  # options the name fixes


_CELLS: dict[str, CellEntry] = {
    "rnn_tanh": CellEntry(ElmanSpec, {"nonlinearity": "tanh"}),
    "rnn_relu": CellEntry(ElmanSpec, {"nonlinearity": "relu"}),
    "rnn_modrelu": CellEntry(ElmanSpec, {"nonlinearity": "modrelu"}),
    "lstm": CellEntry(LSTMSpec),
    "gru": CellEntry(GRUSpec),
    "mingru": CellEntry(MinGRUSpec),
    "minlstm": CellEntry(MinLSTMSpec),
    "indrnn": CellEntry(IndRNNSpec),
}


def register_cell(name: str, spec_class: type[CellSpec], **preset: Any) -> None:
    """Make a new cell family available to ``Recurrent(name, ...)`` (``preset``: options the name
    fixes)."""
    _CELLS[name] = CellEntry(spec_class, dict(preset))


def cell_names() -> list[str]:
    return sorted(_CELLS)


def _entry(name: str) -> CellEntry:
    if name not in _CELLS:
        raise ValueError(f"unknown cell {name!r}; choose one of: {', '.join(cell_names())}")
    return _CELLS[name]


def spec_class(name: str) -> type[CellSpec]:
    """The spec class of family ``name``."""
    return _entry(name).spec_class


def cell_options(name: str) -> set[str]:
    """The equation-changing options a family takes (beyond input_size, hidden_size, bias)."""
    entry = _entry(name)
    return {f.name for f in dataclasses.fields(entry.spec_class)} - set(SIZE_FIELDS) - set(entry.preset)


def option_defaults(name: str) -> dict[str, Any]:
    """Each option of family ``name`` with its default value."""
    names = cell_options(name)
    return {f.name: f.default for f in dataclasses.fields(_entry(name).spec_class) if f.name in names}


def option_examples(name: str) -> list[dict[str, Any]]:
    """Option settings that exercise every option of family ``name``: none, each option one at a time
    (booleans on, every other ``choices`` value, the field's ``example`` value), and all at once.
    The conformance tests and the benchmarks take their cases from here."""
    names = cell_options(name)
    one_each: list[dict[str, Any]] = []
    for f in dataclasses.fields(_entry(name).spec_class):
        if f.name not in names:
            continue
        if "choices" in f.metadata:
            one_each += [{f.name: c} for c in f.metadata["choices"] if c != f.default]
        elif "example" in f.metadata:
            one_each.append({f.name: f.metadata["example"]})
        elif isinstance(f.default, bool):
            one_each.append({f.name: not f.default})
    variants = [{}, *one_each]
    if len(one_each) > 1:
        together = {k: v for d in one_each for k, v in d.items()}
        if together not in variants:
            variants.append(together)
    return variants


def options_of(spec: CellSpec) -> dict[str, Any]:
    """The options of ``spec`` (every field but the sizes and those its registry name fixes), so that
    ``make_cell(spec.name, ..., **options_of(spec))`` rebuilds it; for a class that is not registered,
    every field but the sizes."""
    entry = _CELLS.get(spec.name)
    preset = entry.preset if entry is not None and entry.spec_class is type(spec) else {}
    return {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)
            if f.name not in SIZE_FIELDS and f.name not in preset}


def options_repr(spec: CellSpec, init: InitOptions, shown_elsewhere: tuple[str, ...] = ("proj_size",)) -> str:
    """``", name=value"`` for the cell options and initialisation that differ from their defaults,
    as the modules built on a cell show them in ``repr``."""
    defaults = {f.name: f.default for f in dataclasses.fields(spec)}
    s = "".join(f", {k}={v!r}" for k, v in options_of(spec).items()
                if k not in shown_elsewhere and v != defaults.get(k))
    if init.forget_bias is not None:
        s += f", forget_bias={init.forget_bias}"
    if init.scheme != "torch":
        s += f", init={init.scheme!r}"
    return s


def make_cell(name: str, input_size: int, hidden_size: int, bias: bool = True, **options: Any) -> CellSpec:
    """Build the spec of cell family ``name``; options a family does not have are an error, unless
    left at an "off" value (False, 0, None), which every family accepts."""
    entry = _entry(name)
    return entry.spec_class(input_size, hidden_size, bias, **entry.preset, **_known_options(name, options))


def _known_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` without those family ``name`` lacks and that are off; any other unknown one raises."""
    allowed = cell_options(name)
    for key, value in options.items():
        if key not in allowed and value:
            raise ValueError(
                f"{key} is not an option of the {name!r} cell"
                + (f" (its options: {', '.join(sorted(allowed))})" if allowed else "")
            )
    return {k: v for k, v in options.items() if k in allowed}


CellBuilder = Callable[[int, int, bool], CellSpec]


def cell_builder(cell: str | type[CellSpec] | CellSpec, **options: Any) -> tuple[str | None, CellBuilder]:
    """``(name, build)`` for a layer of family ``cell``: a registered name, a spec class, or a spec
    whose options serve as defaults (its sizes are ignored); ``build(input_size, hidden_size, bias)``
    makes one layer's spec with ``options``. ``name`` is None for an unregistered class whose name
    only an instance knows (then it is the built spec's ``name``)."""
    if isinstance(cell, CellSpec):
        options = {**{k: getattr(cell, k) for k in _option_fields(type(cell))}, **options}
        cell = type(cell)
    if isinstance(cell, str):
        name = cell
        options = _known_options(name, options)  # unknown names and options fail here, once
    elif isinstance(cell, type) and issubclass(cell, CellSpec):
        name = getattr(cell, "name", None)
        if not isinstance(name, str) or _CELLS.get(name, CellEntry(CellSpec)).spec_class is not cell:
            return _unregistered(cell, options)
        options = {k: v for k, v in options.items() if k not in _CELLS[name].preset}
    else:
        raise TypeError(f"cell must be a cell name, a CellSpec class or a CellSpec, got {type(cell).__name__}")
    return name, lambda i, h, b: make_cell(name, i, h, b, **options)


def _option_fields(spec_class: type[CellSpec]) -> list[str]:
    return [f.name for f in dataclasses.fields(spec_class) if f.name not in SIZE_FIELDS]


def _unregistered(spec_class: type[CellSpec], options: dict[str, Any]) -> tuple[str | None, CellBuilder]:
    allowed = set(_option_fields(spec_class))
    unknown = sorted(k for k, v in options.items() if k not in allowed and v)
    if unknown:
        raise ValueError(f"{', '.join(unknown)} not options of {spec_class.__name__}")
    options = {k: v for k, v in options.items() if k in allowed}
    name = getattr(spec_class, "name", None)  # a ClassVar; a property (Elman's) needs an instance
    return (name if isinstance(name, str) else None), lambda i, h, b: spec_class(i, h, b, **options)
