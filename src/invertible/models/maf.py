"""Masked autoregressive flow (Papamakarios et al. 2017) for vector data."""

from __future__ import annotations

from ..core import Bijection, Sequential
from ..distributions import Flow, StandardNormal
from ..layers.autoregressive import MaskedAutoregressive
from ..layers.permutation import Reverse
from .registry import ModelError, check_int

__all__ = ["build_maf"]


def build_maf(
    dim: int, depth: int = 5, hidden: int = 64, layers: int = 2, context_features: int = 0
) -> Flow:
    """MAF on ``(B, dim)``: ``depth`` ``MaskedAutoregressive`` layers with ``Reverse`` between.

    Density evaluation is one pass per layer; sampling needs ``dim`` passes per layer.
    Base ``StandardNormal((dim,))``; standardise the data beforehand.
    ``context_features=K > 0``: a conditional MAF, every MADE also reads a ``(B, K)`` context.
    """
    name = "build_maf"
    check_int(name, "dim", dim, minimum=2)
    check_int(name, "depth", depth)
    check_int(name, "layers", layers)
    context_features = check_int(name, "context_features", context_features, minimum=0)
    if check_int(name, "hidden", hidden) < dim - 1:
        # MADE's hidden degrees must cover 1..dim-1, or some outputs lose their inputs.
        raise ModelError(f"build_maf: hidden must be >= dim - 1 = {dim - 1}, got {hidden}")
    steps: list[Bijection] = []
    for k in range(depth):
        if k:
            steps.append(Reverse())
        steps.append(MaskedAutoregressive(dim, hidden=hidden, layers=layers,
                                          context_features=context_features))
    return Flow(Sequential(*steps), StandardNormal((dim,)))
