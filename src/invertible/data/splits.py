"""Deterministic, disjoint train/val/test index sets.

``val`` is a seeded random fraction of the official training set; what remains is
``train``. Datasets without an official test set (digits, image folders) first carve a
test set with a fixed seed that does not depend on the user's seed, so test figures stay
comparable across runs with different seeds. Indices are returned sorted, so every
split keeps the file order; shuffling is the trainer's job.
"""

from __future__ import annotations

import numpy as np

from .base import DatasetError

SPLITS = ("train", "val", "test")
# Fixed seed for carving test sets out of datasets that ship without one.
TEST_SEED = 0x7E57


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")


def check_fraction(val_fraction: float) -> float:
    try:
        f = float(val_fraction)
    except (TypeError, ValueError):
        raise DatasetError(f"val_fraction must be a number, got {val_fraction!r}") from None
    if not 0.0 <= f < 1.0:
        raise DatasetError(f"val_fraction must be in [0, 1), got {val_fraction}")
    return f


def check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DatasetError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _n_held_out(n: int, fraction: float, what: str) -> int:
    if fraction == 0.0:
        return 0
    k = max(1, round(fraction * n))
    if k >= n:
        raise DatasetError(f"{what} fraction {fraction} leaves no training data out of {n}")
    return k


def train_val_indices(n: int, split: str, val_fraction: float, seed: int) -> np.ndarray:
    """Indices into ``n`` official training samples for ``split`` in {"train", "val"}."""
    f = check_fraction(val_fraction)
    n_val = _n_held_out(n, f, "val")
    if split == "val" and n_val == 0:
        raise DatasetError("the val split is empty: val_fraction is 0")
    perm = np.random.default_rng(check_seed(seed)).permutation(n)
    chosen = perm[:n_val] if split == "val" else perm[n_val:]
    return np.sort(chosen)


def three_way_indices(
    n: int, split: str, val_fraction: float, seed: int, test_fraction: float = 0.2
) -> np.ndarray:
    """Indices into ``n`` samples with no official test set: fixed test, seeded val."""
    check_split(split)
    n_test = _n_held_out(n, test_fraction, "test")
    perm = np.random.default_rng(TEST_SEED).permutation(n)
    test, rest = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    if split == "test":
        return test
    return rest[train_val_indices(len(rest), split, val_fraction, seed)]
