"""Masked autoregressive flow (Papamakarios et al. 2017) for vector data."""

from __future__ import annotations

from ..core import Bijection, Sequential
from ..distributions import Flow, StandardNormal
from ..layers.autoregressive import MaskedAutoregressive
from ..layers.permutation import Reverse

__all__ = ["build_maf"]


def build_maf(dim: int, depth: int = 5, hidden: int = 64, layers: int = 2) -> Flow:
    """MAF on ``(B, dim)``: ``depth`` ``MaskedAutoregressive`` layers with ``Reverse`` between.

    Density evaluation is one pass per layer; sampling needs ``dim`` passes per layer.
    Base ``StandardNormal((dim,))``; standardise the data beforehand.
    """
    if dim < 2:
        raise ValueError(f"build_maf: dim must be >= 2, got {dim}")
    if depth < 1:
        raise ValueError(f"build_maf: depth must be >= 1, got {depth}")
    steps: list[Bijection] = []
    for k in range(depth):
        if k:
            steps.append(Reverse())
        steps.append(MaskedAutoregressive(dim, hidden=hidden, layers=layers))
    return Flow(Sequential(*steps), StandardNormal((dim,)))
