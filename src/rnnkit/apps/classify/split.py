"""The validation split: carved from the training cases, stratified by class, seeded."""

from __future__ import annotations

import numpy as np

from rnnkit.errors import UserError


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices): about ``fraction`` of every class to validation, at least
    one case of each class that has two or more (a class with one case stays in training)."""
    if not 0 < fraction < 1:
        raise UserError(f"val_fraction must lie in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        k = 0 if len(members) < 2 else min(len(members) - 1, max(1, round(fraction * len(members))))
        val.extend(members[:k])
        train.extend(members[k:])
    if not val:
        raise UserError("too few training cases for a validation split (every class has a single case)")
    return np.sort(np.array(train, dtype=np.int64)), np.sort(np.array(val, dtype=np.int64))


def stratified_folds(y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """The fold (0 .. ``folds`` - 1) of every case: each class shuffled with the seed and dealt round
    the folds, the next class starting where the last one stopped, so fold sizes differ by one at most
    and every fold holds about ``1 / folds`` of each class."""
    if not 2 <= folds <= len(y):
        raise UserError(f"cross-fitting needs 2 to {len(y)} folds (one case each at least) for {len(y)} "
                        f"training cases, got {folds}")
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    start = 0
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        fold[members] = (start + np.arange(len(members))) % folds
        start = (start + len(members)) % folds
    return fold
