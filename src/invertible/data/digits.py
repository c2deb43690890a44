"""The 8x8 handwritten digits that ship with scikit-learn (no download).

1797 images with 17 grey levels (0..16), so ``n_bins = 17``: bits/dim must count 17
levels, not 256.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

DIGITS_BINS = 17


@lru_cache(maxsize=1)
def _cached() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images).astype(np.uint8)[:, None]
    if images.max() >= DIGITS_BINS:  # guards against a changed scikit-learn dataset
        raise RuntimeError("scikit-learn digits have values above 16")
    return images, bunch.target.astype(np.int64)


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 images as uint8 ``(N, 1, 8, 8)`` in 0..16, and their labels (fresh copies)."""
    images, labels = _cached()
    return images.copy(), labels.copy()
