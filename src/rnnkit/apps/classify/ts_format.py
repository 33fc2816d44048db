"""The ``.ts`` format of the UCR/UEA archives (sktime, aeon), read without either library.

A header of ``@key value`` lines (``@problemName``, ``@timeStamps``, ``@missing``, ``@univariate``,
``@dimensions``, ``@equalLength``, ``@seriesLength``, ``@classLabel true a b c``), ``#`` comments,
then ``@data`` and one line per case: the dimensions separated by ``:``, the values of each by ``,``,
the label last. ``?`` (or ``NaN``) is a missing value. Not supported (one-line errors): time stamps
(``@timeStamps true``) and regression targets (``@targetLabel``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rnnkit.errors import UserError

from .cases import Cases, fill_missing

_KNOWN = {"problemname", "timestamps", "missing", "univariate", "dimension", "dimensions", "equallength",
          "serieslength", "classlabel", "targetlabel", "data"}


def read_ts(path: Path, missing: str = "interpolate") -> Cases:
    source = str(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserError(f"{source}: not a text file (UTF-8)") from None
    header: dict[str, str] = {}
    body_start = None
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("@"):
            raise UserError(f"{source}: line {n}: data before @data (a .ts file starts with @-header lines)")
        key, _, value = line[1:].partition(" ")
        key = key.lower()
        if key not in _KNOWN:
            raise UserError(f"{source}: line {n}: unknown header key @{key[:30]}")
        if key == "data":
            body_start = n
            break
        header[key] = value.strip()
    if body_start is None:
        raise UserError(f"{source}: no @data line (malformed .ts header)")
    if _flag(header, "timestamps", source):
        raise UserError(f"{source}: @timeStamps true is not supported (give the values without time stamps)")
    if "targetlabel" in header:
        raise UserError(f"{source}: @targetLabel (a regression set) is not a classification set")
    if "classlabel" not in header:
        raise UserError(f"{source}: no @classLabel line in the header (malformed .ts header)")
    has_labels = _flag(header, "classlabel", source)
    declared = header["classlabel"].split()[1:]
    if has_labels and not declared:
        raise UserError(f"{source}: @classLabel true lists no class labels")
    univariate = _flag(header, "univariate", source) if "univariate" in header else None
    n_dims_declared = _int(header, "dimensions", source) or _int(header, "dimension", source)
    ids, values, labels = [], [], []
    n_dims = None
    for n in range(body_start + 1, len(lines) + 1):
        line = lines[n - 1].strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if has_labels:
            if len(fields) < 2:
                raise UserError(f"{source}: line {n}: expected dimensions then ':label'")
            label = fields.pop().strip()
            if label not in declared:
                raise UserError(f"{source}: line {n}: label not declared in @classLabel")
            labels.append(label)
        if n_dims is None:
            n_dims = len(fields)
        elif len(fields) != n_dims:
            raise UserError(f"{source}: line {n}: {len(fields)} dimensions, earlier cases have {n_dims}")
        dims = [_values(f, source, n) for f in fields]
        if len({len(d) for d in dims}) != 1:
            raise UserError(f"{source}: line {n}: the dimensions of one case have different lengths")
        case = str(len(ids))
        names = [f"dim_{k}" for k in range(len(dims))]
        values.append(fill_missing(np.stack(dims, 1).astype(np.float32), missing, case, names, source))
        ids.append(case)
    if not ids:
        raise UserError(f"{source}: no cases after @data")
    assert n_dims is not None
    if univariate is True and n_dims != 1:
        raise UserError(f"{source}: @univariate true, but the cases have {n_dims} dimensions")
    if n_dims_declared and n_dims_declared != n_dims:
        raise UserError(f"{source}: @dimensions {n_dims_declared}, but the cases have {n_dims}")
    return Cases(ids, values, labels if has_labels else None, None, [f"dim_{k}" for k in range(n_dims)], source)


def _values(field: str, source: str, line: int) -> np.ndarray:
    text = [v.strip() for v in field.split(",")]
    if text == [""]:
        return np.zeros(0, dtype=np.float64)
    out = np.empty(len(text), dtype=np.float64)
    for i, v in enumerate(text):
        if v in ("?", "NaN", "nan", ""):
            out[i] = np.nan
            continue
        try:
            out[i] = float(v)
        except ValueError:
            raise UserError(f"{source}: line {line}: value {i + 1} is not a number") from None
        if not np.isfinite(out[i]):
            raise UserError(f"{source}: line {line}: value {i + 1} is infinite")
    return out


def _flag(header: dict[str, str], key: str, source: str) -> bool:
    word = header.get(key, "false").lower().split()[:1]
    if word not in (["true"], ["false"]):
        raise UserError(f"{source}: @{key} must be true or false (malformed .ts header)")
    return word == ["true"]


def _int(header: dict[str, str], key: str, source: str) -> int | None:
    if key not in header:
        return None
    try:
        return int(header[key])
    except ValueError:
        raise UserError(f"{source}: @{key} must be an integer (malformed .ts header)") from None
