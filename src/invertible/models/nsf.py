"""Neural Spline Flows (Durkan et al. 2019) for vector data: coupling and autoregressive."""

from __future__ import annotations

from ..core import Bijection, Sequential
from ..distributions import Flow, StandardNormal
from ..layers.autoregressive import MaskedSplineAutoregressive
from ..layers.coupling import SplineCoupling
from ..layers.masks import alternating_mask
from ..layers.permutation import Reverse
from ..layers.splines import check_spline_options
from ..nets import MLP
from .registry import ModelError, check_int, check_real

__all__ = ["build_nsf_ar", "build_nsf_coupling", "check_spline_model"]


def check_spline_model(name: str, bins: int, tail_bound: float) -> float:
    """A builder's spline options (``ModelError`` if unusable); returns the tail bound."""
    check_int(name, "bins", bins, minimum=2)
    bound = check_real(name, "tail_bound", tail_bound, lambda b: b > 0, "> 0")
    try:
        check_spline_options(name, bins, bound)
    except ValueError as e:
        raise ModelError(str(e)) from None
    return bound


def _check(name: str, dim: int, depth: int, hidden: int, layers: int, bins: int,
           tail_bound: float, context_features: int) -> int:
    """Raise ``ModelError`` for an unusable option; returns ``context_features`` as an int."""
    check_int(name, "dim", dim, minimum=2)
    for key, value in (("depth", depth), ("hidden", hidden), ("layers", layers)):
        check_int(name, key, value)
    check_spline_model(name, bins, tail_bound)
    return check_int(name, "context_features", context_features, minimum=0)


def build_nsf_coupling(
    dim: int, depth: int = 5, hidden: int = 64, layers: int = 2, bins: int = 8,
    tail_bound: float = 3.0, context_features: int = 0,
) -> Flow:
    """NSF with coupling layers on ``(B, dim)``: ``depth`` ``SplineCoupling`` steps.

    Consecutive steps swap the roles of even and odd coordinates; each conditioner is an
    ``MLP(layers, hidden)``. Splines of ``bins`` bins on ``[-tail_bound, tail_bound]``,
    identity outside, so standardise the data beforehand. Base ``StandardNormal((dim,))``.
    One pass each way. ``context_features=K > 0``: conditional on a ``(B, K)`` context,
    which every conditioner reads beside the kept coordinates.
    """
    name = "build_nsf_coupling"
    context_features = _check(name, dim, depth, hidden, layers, bins, tail_bound,
                              context_features)

    def net(i: int, o: int) -> MLP:
        return MLP(i, o, hidden=hidden, layers=layers)

    steps = [
        SplineCoupling(alternating_mask(dim, flip=k % 2 == 1), net, bins=bins,
                       tail_bound=tail_bound, context_features=context_features)
        for k in range(depth)
    ]
    return Flow(Sequential(*steps), StandardNormal((dim,)))


def build_nsf_ar(
    dim: int, depth: int = 5, hidden: int = 64, layers: int = 2, bins: int = 8,
    tail_bound: float = 3.0, context_features: int = 0,
) -> Flow:
    """Autoregressive NSF on ``(B, dim)``: ``depth`` ``MaskedSplineAutoregressive`` layers.

    ``Reverse`` between layers; MADE conditioners of ``layers`` hidden layers of width
    ``hidden`` (>= dim - 1). Density is one pass per layer, sampling ``dim`` passes.
    Standardise the data beforehand. Base ``StandardNormal((dim,))``.
    ``context_features=K > 0``: conditional on a ``(B, K)`` context read by every MADE.
    """
    name = "build_nsf_ar"
    context_features = _check(name, dim, depth, hidden, layers, bins, tail_bound,
                              context_features)
    if hidden < dim - 1:
        raise ModelError(f"{name}: hidden must be >= dim - 1 = {dim - 1}, got {hidden}")
    steps: list[Bijection] = []
    for k in range(depth):
        if k:
            steps.append(Reverse())
        steps.append(MaskedSplineAutoregressive(dim, bins=bins, tail_bound=tail_bound,
                                                hidden=hidden, layers=layers,
                                                context_features=context_features))
    return Flow(Sequential(*steps), StandardNormal((dim,)))
