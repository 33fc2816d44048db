"""Typing and range-checking option values against their :mod:`~rnnkit.validation.schema`.

Every refusal is one :class:`~rnnkit.errors.UserError` line naming where the value came from, the
option, the value and what is allowed::

    the command line: lr = nan is not allowed: expected a finite number > 0
    run.yaml: unknown option 'lrr' (did you mean lr?)
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Iterable
from typing import Any, TypeVar

from rnnkit.errors import UserError
from rnnkit.validation.schema import INT_LIMIT, Opt, option_specs

T = TypeVar("T")


def show(value: Any) -> str:
    """A value as the message shows it: repr, at most 40 characters (files can hold anything)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def unknown_option(key: Any, known: Iterable[str], source: str) -> UserError:
    """``source: unknown option 'x' (did you mean y?)``."""
    close = difflib.get_close_matches(str(key), sorted(known), n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return UserError(f"{source}: unknown option {show(key)}{hint}")


def refuse(source: str, name: str, value: Any, allowed: str) -> UserError:
    return UserError(f"{source}: {name} = {show(value)} is not allowed: expected {allowed}")


def _kind(hint: Any) -> tuple[str, bool]:
    """('int' | 'float' | 'str' | 'bool' | 'list' | 'any', optional) of a field's annotation."""
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        hint = args[0] if len(args) == 1 else Any
    if typing.get_origin(hint) is list:
        return "list", optional
    return {int: "int", float: "float", str: "str", bool: "bool"}.get(hint, "any"), optional


def _typed(kind: str, value: Any) -> tuple[bool, Any]:
    """(ok, the value as ``kind``): YAML/JSON/flags give bools, ints, floats and strings."""
    if kind == "bool":
        return isinstance(value, bool), value
    if kind == "int":
        if isinstance(value, str):  # --set seq_len=1_000 or a quoted number in JSON
            try:
                value = int(value.strip())
            except ValueError:
                return False, value
        if isinstance(value, float) and value.is_integer() and abs(value) <= INT_LIMIT:
            value = int(value)  # YAML reads 1e3 as a float
        return isinstance(value, int) and not isinstance(value, bool), value
    if kind == "float":
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                value = float(value.strip())
            except ValueError:
                return False, value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False, value
        try:
            return True, float(value)
        except OverflowError:  # an int beyond float's range
            return False, value
    if kind == "str":
        # numbers are accepted as their text (devices: 2, precision: 32)
        ok = isinstance(value, str) or (isinstance(value, (int, float)) and not isinstance(value, bool))
        return ok, str(value) if ok else value
    if kind == "list":
        if isinstance(value, str):
            value = [value]
        return isinstance(value, list) and all(isinstance(v, str) for v in value), value
    return True, value


def check_value(name: str, value: Any, spec: Opt, hint: Any, source: str) -> Any:
    """``value`` typed as ``hint`` and checked against ``spec``; a one-line UserError otherwise."""
    kind, optional = _kind(hint)
    if value is None:
        if optional:
            return None
        raise refuse(source, name, value, spec.describe(kind) + " (not null)")
    ok, value = _typed(kind, value)
    if not ok:
        raise refuse(source, name, value, spec.describe(kind))
    if spec.special and not isinstance(value, list) and value in spec.special:
        return value
    choices = spec.choice_list()
    if choices is not None and value not in choices:
        raise refuse(source, name, value, spec.describe(kind))
    if kind in ("int", "float"):
        bad = (kind == "float" and spec.finite and not math.isfinite(value)) \
            or (kind == "int" and abs(value) > INT_LIMIT) \
            or (spec.min is not None and value < spec.min) or (spec.max is not None and value > spec.max) \
            or (spec.gt is not None and not value > spec.gt) or (spec.lt is not None and not value < spec.lt)
        if bad:
            limit = "" if kind == "float" or abs(value) <= INT_LIMIT else f" of at most {INT_LIMIT}"
            raise refuse(source, name, value, spec.describe(kind) + limit)
    if spec.check is not None:
        why = spec.check(value)
        if why is not None:
            raise refuse(source, name, value, why)
    return value


def check_mapping(cls: type, mapping: dict[str, Any], source: str, skip_none: bool = False) -> dict[str, Any]:
    """``mapping`` with every key a field of dataclass ``cls`` and every value typed and checked.

    ``skip_none``: ``None`` means "not given" (flags a user did not pass) and is dropped."""
    specs = option_specs(cls)
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if key not in specs:
            raise unknown_option(key, specs, source)
        if value is None and skip_none:
            continue
        out[key] = check_value(key, value, specs[key], hints[key], source)
    return out


def check_fields(obj: T, source: str = "options") -> T:
    """Check every field of dataclass instance ``obj`` in place (a config built in Python, not parsed)."""
    checked = check_mapping(type(obj), dataclasses.asdict(obj), source)  # type: ignore[call-overload]
    for key, value in checked.items():
        object.__setattr__(obj, key, value)
    return obj
