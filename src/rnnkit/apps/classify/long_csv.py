"""The long CSV format: one row per time step of each case.

``case_id,split,label,t,dim_0[,dim_1,...]`` (the layout of ``../shared/data/classification/``):
``split`` (train/test) and ``label`` are optional (no split: the file is one split; no label: only
``predict`` can use it); every column other than those four is a dimension, in file order. ``t``
orders the steps of a case; it must be consecutive integers (a gap is a missing step: write the row
with empty values, which ``--missing interpolate`` fills). Errors name the file, the line and the
column; never a value.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rnnkit.errors import UserError

from .cases import Cases, fill_missing

ID, SPLIT, LABEL, TIME = "case_id", "split", "label", "t"
SPLITS = ("train", "test")
_MISSING_TEXT = ("", "nan", "NaN", "NA", "?")


def read_long_csv(path: Path, missing: str = "interpolate") -> Cases:
    import pandas as pd

    source = str(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise UserError(f"{source}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{source}: not a readable CSV ({first})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    for col in (ID, TIME):
        if col not in frame.columns:
            raise UserError(f"{source}: no {col!r} column; a long CSV has case_id,split,label,t,dim_0,... "
                            f"(columns found: {', '.join(frame.columns[:12])})")
    if len(set(frame.columns)) != len(frame.columns):
        raise UserError(f"{source}: duplicate column names")
    dims = [c for c in frame.columns if c not in (ID, SPLIT, LABEL, TIME)]
    if not dims:
        raise UserError(f"{source}: no value columns (dim_0, ...) after {ID},{SPLIT},{LABEL},{TIME}")
    if frame.empty:
        raise UserError(f"{source}: no rows")
    values = _numbers(frame, dims, source)
    t = _integers(frame[TIME], TIME, source)
    if SPLIT in frame.columns:
        bad = ~frame[SPLIT].isin(SPLITS)
        if bad.any():
            raise UserError(f"{source}: line {int(np.argmax(bad.to_numpy())) + 2}: split must be train or test")
    ids = frame[ID].to_numpy()
    if (ids == "").any():
        raise UserError(f"{source}: line {int(np.argmax(ids == '')) + 2}: empty case_id")
    codes, order = pd.factorize(frame[ID], sort=False)  # cases in order of first appearance
    rows_by_case = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[rows_by_case], np.arange(len(order) + 1))
    out_values, labels, splits = [], [], []
    has_label, has_split = LABEL in frame.columns, SPLIT in frame.columns
    for k, case in enumerate(order):
        rows = rows_by_case[bounds[k]:bounds[k + 1]]
        rows = rows[np.argsort(t[rows], kind="stable")]
        steps = t[rows]
        if len(steps) > 1:
            d = np.diff(steps)
            if (d == 0).any():
                raise UserError(f"{source}: case {case!r}: step t={int(steps[np.argmax(d == 0)])} appears twice "
                                f"(line {int(rows[np.argmax(d == 0) + 1]) + 2})")
            if (d != 1).any():
                j = int(np.argmax(d != 1))
                raise UserError(f"{source}: case {case!r}: t jumps from {int(steps[j])} to {int(steps[j + 1])}; "
                                "write the missing steps as rows with empty values (interpolated) instead")
        for col, bucket, present in ((LABEL, labels, has_label), (SPLIT, splits, has_split)):
            if not present:
                continue
            seen = frame[col].to_numpy()[rows]
            if (seen != seen[0]).any():
                raise UserError(f"{source}: case {case!r} has more than one {col} (line {int(rows[0]) + 2} and "
                                f"line {int(rows[np.argmax(seen != seen[0])]) + 2})")
            if col == LABEL and seen[0] == "":
                raise UserError(f"{source}: case {case!r}: empty label (line {int(rows[0]) + 2})")
            bucket.append(str(seen[0]))
        out_values.append(fill_missing(values[rows].copy(), missing, str(case), dims, source))
    return Cases([str(c) for c in order], out_values, labels if has_label else None,
                 splits if has_split else None, dims, source)


def _numbers(frame, dims: list[str], source: str) -> np.ndarray:
    import pandas as pd

    text = frame[dims]
    out = np.empty(text.shape, dtype=np.float64)
    for j, col in enumerate(dims):
        raw = text[col].str.strip()
        blank = raw.isin(_MISSING_TEXT)
        parsed = pd.to_numeric(raw.where(~blank, None), errors="coerce")
        bad = parsed.isna() & ~blank
        if bad.any():
            raise UserError(f"{source}: line {int(np.argmax(bad.to_numpy())) + 2}, column {col!r}: not a number")
        arr = parsed.to_numpy(dtype=np.float64, na_value=np.nan)
        if np.isinf(arr).any():
            raise UserError(f"{source}: line {int(np.argmax(np.isinf(arr))) + 2}, column {col!r}: infinite value")
        out[:, j] = arr
    return out.astype(np.float32)


def _integers(column, name: str, source: str) -> np.ndarray:
    import pandas as pd

    parsed = pd.to_numeric(column.str.strip(), errors="coerce")
    arr = parsed.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(arr) | (arr != np.round(arr))
    if bad.any():
        raise UserError(f"{source}: line {int(np.argmax(bad)) + 2}, column {name!r}: not an integer step")
    return arr.astype(np.int64)
