"""Reading a data file (long CSV or ``.ts``, by suffix) and checking it against the training data."""

from __future__ import annotations

from pathlib import Path

from rnnkit.errors import UserError

from .cases import MISSING_POLICIES, Cases


def read_cases(path: str | Path, missing: str = "interpolate") -> Cases:
    """The cases of ``path``: ``.ts`` files through :mod:`.ts_format`, anything else as a long CSV."""
    path = Path(path)
    if missing not in MISSING_POLICIES:
        raise UserError(f"unknown missing-value policy {missing!r}; choose one of: {', '.join(MISSING_POLICIES)}")
    if not path.exists():
        raise UserError(f"data file {path} not found")
    if not path.is_file():
        raise UserError(f"{path} is not a file")
    if path.suffix.lower() == ".ts":
        from .ts_format import read_ts

        return read_ts(path, missing)
    from .long_csv import read_long_csv

    return read_long_csv(path, missing)


def check_dims(cases: Cases, n_dims: int, what: str = "the training data") -> None:
    """The model reads ``n_dims`` values per step: ``cases`` must have exactly that many."""
    if cases.n_dims != n_dims:
        raise UserError(f"{cases.source}: {cases.n_dims} dimension(s) per step, but {what} had {n_dims}")
