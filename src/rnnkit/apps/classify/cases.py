"""``Cases``: a classification data set in memory, one ``(length, dims)`` array per case.

Both file readers produce it; everything after reading (splitting, normalising, padding, the
baseline) works on it. Lengths may differ between cases; nothing is ever cut to a common length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnnkit.errors import UserError


@dataclass
class Cases:
    ids: list[str]
    values: list[np.ndarray]  # one float32 array (length, dims) per case, no NaN
    labels: list[str] | None  # None: a file without labels (predict)
    splits: list[str] | None  # "train" / "test" per case, or None: the file has no split
    dim_names: list[str]
    source: str  # the file, for messages

    def __len__(self) -> int:
        return len(self.values)

    @property
    def n_dims(self) -> int:
        return len(self.dim_names)

    def lengths(self) -> np.ndarray:
        return np.array([len(v) for v in self.values], dtype=np.int64)

    def select(self, index: list[int] | np.ndarray) -> Cases:
        idx = [int(i) for i in index]
        return Cases([self.ids[i] for i in idx], [self.values[i] for i in idx],
                     None if self.labels is None else [self.labels[i] for i in idx],
                     None if self.splits is None else [self.splits[i] for i in idx], list(self.dim_names),
                     self.source)

    def split(self, name: str) -> Cases:
        """The cases of split ``name``; a file without a split column is all one split."""
        if self.splits is None:
            return self
        picked = self.select([i for i, s in enumerate(self.splits) if s == name])
        if not len(picked):
            raise UserError(f"{self.source}: no cases in split {name!r} (the split column holds "
                            f"{', '.join(sorted(set(self.splits)))})")
        return picked

    def require_labels(self) -> list[str]:
        if self.labels is None:
            raise UserError(f"{self.source}: no labels (a 'label' column, or @classLabel true in a .ts file)")
        return self.labels


def encode_labels(labels: list[str], classes: list[str], source: str) -> np.ndarray:
    """Class indices of ``labels`` in the order of ``classes`` (the order saved with the model)."""
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({lab for lab in labels if lab not in index})
    if unknown:
        shown = ", ".join(repr(u[:40]) for u in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise UserError(f"{source}: label(s) {shown} not among the {len(classes)} classes the model was trained "
                        "on (a label only in the test data cannot be predicted)")
    return np.array([index[lab] for lab in labels], dtype=np.int64)


def class_order(labels: list[str]) -> list[str]:
    """The classes in a stable order: numerically when every label is a number, else as text."""
    unique = set(labels)
    try:
        return sorted(unique, key=lambda s: (float(s), s))
    except ValueError:
        return sorted(unique)


def pad(cases: Cases, max_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(values (N, T, D) float32 zero-padded after each case's end, lengths (N,))."""
    lengths = cases.lengths()
    T = int(max_len or (lengths.max() if len(lengths) else 1))
    x = np.zeros((len(cases), T, cases.n_dims), dtype=np.float32)
    for i, v in enumerate(cases.values):
        x[i, :len(v)] = v
    return x, lengths


MISSING_POLICIES = ("interpolate", "error")


def fill_missing(values: np.ndarray, policy: str, case: str, dim_names: list[str], source: str) -> np.ndarray:
    """``values`` (length, dims) with NaNs filled: linearly between known values, with the nearest one
    before the first and after the last (``interpolate``), or a one-line error (``error``)."""
    if values.shape[0] == 0:
        raise UserError(f"{source}: case {case!r} has no values (an empty case)")
    missing = np.isnan(values)
    if not missing.any():
        return values
    for d in range(values.shape[1]):
        gaps = missing[:, d]
        if not gaps.any():
            continue
        if policy == "error":
            raise UserError(f"{source}: case {case!r}, {dim_names[d]}: missing value at step {int(np.argmax(gaps))} "
                            "(--missing interpolate fills gaps linearly)")
        if gaps.all():
            raise UserError(f"{source}: case {case!r}, {dim_names[d]}: every value is missing, nothing to interpolate")
        steps = np.arange(len(gaps))
        values[gaps, d] = np.interp(steps[gaps], steps[~gaps], values[~gaps, d])
    return values
