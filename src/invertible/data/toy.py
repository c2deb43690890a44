"""Two-dimensional toy densities for vector flows.

- ``moons``: two interleaved half circles (scikit-learn's ``make_moons``, noise 0.05),
  centred at the origin.
- ``rings``: four concentric rings of radii 0.5, 1, 1.5, 2 with radial noise 0.08, each
  ring holding a share of points proportional to its circumference.
- ``checkerboard``: uniform on the 8 dark squares of a 4x4 board of unit squares on
  ``[-2, 2]^2`` (the Neural Spline Flows paper's 2-D test density, scaled to unit squares).

Every split draws from its own stream of ``SeedSequence([seed, split])``, so splits are
independent and the same ``seed`` always gives the same points.
"""

from __future__ import annotations

import numpy as np

from .base import DatasetError

DEFAULT_SIZES = {"train": 10_000, "val": 2_000, "test": 2_000}
_SPLIT_KEY = {"train": 0, "val": 1, "test": 2}


def _rng(seed: int, split: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_KEY[split]]))


def moons(n: int, rng: np.random.Generator) -> np.ndarray:
    from sklearn.datasets import make_moons

    x, _ = make_moons(n, noise=0.05, random_state=int(rng.integers(2**31 - 1)))
    return x - np.array([0.5, 0.25])


def rings(n: int, rng: np.random.Generator) -> np.ndarray:
    radii = np.array([0.5, 1.0, 1.5, 2.0])
    which = rng.choice(len(radii), size=n, p=radii / radii.sum())
    angle = rng.uniform(0.0, 2 * np.pi, size=n)
    r = radii[which] + 0.08 * rng.standard_normal(n)
    return np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)


def checkerboard(n: int, rng: np.random.Generator) -> np.ndarray:
    # Square (i, j) of the board is dark when i + j is even: pick one of the 8 uniformly.
    dark = np.array([(i, j) for i in range(4) for j in range(4) if (i + j) % 2 == 0])
    corner = dark[rng.integers(len(dark), size=n)] - 2.0
    return corner + rng.uniform(0.0, 1.0, size=(n, 2))


TOYS = {"moons": moons, "rings": rings, "checkerboard": checkerboard}


def load_toy(name: str, split: str, seed: int, n_samples: int | None) -> np.ndarray:
    """``(N, 2)`` float32 points of toy ``name``."""
    n = DEFAULT_SIZES[split] if n_samples is None else n_samples
    if n < 1:
        raise DatasetError(f"n_samples must be at least 1, got {n}")
    return TOYS[name](n, _rng(seed, split)).astype(np.float32)
