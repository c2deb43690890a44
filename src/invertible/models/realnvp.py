"""RealNVP (Dinh et al. 2017): affine coupling flows for vectors and multi-scale images."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

from ..core import Bijection, Inverse, Sequential
from ..distributions import Flow, StandardNormal
from ..layers.coupling import AffineCoupling
from ..layers.elementwise import LogitTransform
from ..layers.masks import alternating_mask, channel_mask, checkerboard_mask
from ..layers.reshape import FactorOut, Squeeze
from ..nets import MLP, ConvResNet
from .registry import ModelError, check_halvings, check_int, check_real

__all__ = ["build_realnvp", "build_realnvp_2d", "check_alpha", "check_levels", "image_shape"]


def build_realnvp_2d(
    dim: int = 2, depth: int = 8, hidden: int = 64, layers: int = 2, context_features: int = 0
) -> Flow:
    """Vector RealNVP on ``(B, dim)``: ``depth`` affine couplings with alternating masks.

    Each coupling's conditioner is an ``MLP`` with ``layers`` hidden layers of width
    ``hidden``; consecutive couplings swap the roles of even and odd coordinates. Base
    ``StandardNormal((dim,))``. The data is taken as is (standardise it beforehand).
    ``context_features=K > 0``: conditional on a ``(B, K)`` context read by every MLP.
    """
    name = "build_realnvp_2d"
    check_int(name, "dim", dim, minimum=2)
    for key, value in (("depth", depth), ("hidden", hidden), ("layers", layers)):
        check_int(name, key, value)
    context_features = check_int(name, "context_features", context_features, minimum=0)

    def net(i: int, o: int) -> MLP:
        return MLP(i, o, hidden=hidden, layers=layers)

    steps = [AffineCoupling(alternating_mask(dim, flip=k % 2 == 1), net,
                            context_features=context_features) for k in range(depth)]
    return Flow(Sequential(*steps), StandardNormal((dim,)))


def image_shape(shape: Sequence[int], name: str) -> tuple[int, int, int]:
    """Validate a ``(C, H, W)`` event shape for an image model (``ModelError`` if not)."""
    ints = all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in shape)
    if len(shape) != 3 or not ints or min(shape) < 1:
        raise ModelError(f"{name}: shape must be (C, H, W) with positive sizes, got {shape}")
    return tuple(int(s) for s in shape)  # type: ignore[return-value]


def check_levels(shape: tuple[int, int, int], levels: int, name: str) -> None:
    """Each of ``levels`` squeezes halves H and W, so both must divide by ``2**levels``."""
    check_int(name, "levels", levels)
    _, h, w = shape
    check_halvings(name, h, w, levels, f"levels={levels}; use fewer levels")


def check_alpha(name: str, alpha: float) -> float:
    """The logit preprocessing's ``alpha``, in [0, 0.5)."""
    return check_real(name, "alpha", alpha, lambda a: 0 <= a < 0.5, "in [0, 0.5)")


def _realnvp_scale(
    c: int, h: int, w: int, levels_left: int, depth: int, hidden: int, blocks: int, k_ctx: int
) -> Bijection:
    def net(i: int, o: int) -> ConvResNet:
        return ConvResNet(i, o, hidden=hidden, blocks=blocks)

    def checkerboards(c: int, h: int, w: int) -> list[Bijection]:
        return [
            AffineCoupling(checkerboard_mask(h, w, flip=k % 2 == 1), net, channels=c,
                           context_features=k_ctx)
            for k in range(depth)
        ]

    steps = checkerboards(c, h, w)
    if levels_left == 0:
        return Sequential(*steps)
    c4, h2, w2 = 4 * c, h // 2, w // 2
    steps.append(Squeeze())
    steps += [AffineCoupling(channel_mask(c4, flip=k % 2 == 1), net, context_features=k_ctx)
              for k in range(depth)]
    inner = _realnvp_scale(c4 // 2, h2, w2, levels_left - 1, depth, hidden, blocks, k_ctx)
    steps += [FactorOut(c4 // 2, inner), Inverse(Squeeze())]
    return Sequential(*steps)


def build_realnvp(
    shape: Sequence[int],
    levels: int = 2,
    depth: int = 4,
    hidden: int = 32,
    blocks: int = 1,
    alpha: float = 0.05,
    context_features: int = 0,
) -> Flow:
    """Multi-scale RealNVP for images ``(B, C, H, W)`` with values in [0, 1].

    ``LogitTransform(alpha)``, then per level: ``depth`` checkerboard couplings, a
    ``Squeeze``, ``depth`` channel couplings, and half of the channels factored out; the
    rest goes on to the next level, and the last one ends with ``depth`` checkerboard
    couplings. Conditioners are ``ConvResNet(hidden, blocks)``. Latents keep the input's
    layout, base ``StandardNormal(shape)``. H and W must divide by ``2**levels``.
    For 28x28 MNIST, ``levels=2`` (28 -> 14 -> 7). ``context_features=K > 0`` gives a
    conditional flow ``p(x | c)``, ``c`` of shape ``(B, K)`` fed to every coupling's net.
    """
    name = "build_realnvp"
    c, h, w = image_shape(shape, name)
    check_levels((c, h, w), levels, name)
    check_int(name, "depth", depth)
    check_int(name, "hidden", hidden)
    check_int(name, "blocks", blocks, minimum=0)
    check_alpha(name, alpha)
    context_features = check_int(name, "context_features", context_features, minimum=0)
    if (h >> levels) * (w >> levels) < 2:
        raise ModelError(
            f"build_realnvp: after {levels} squeezes a {h}x{w} image is "
            f"{h >> levels}x{w >> levels}, too small for a checkerboard (use fewer levels)"
        )
    body = _realnvp_scale(c, h, w, levels, depth, hidden, blocks, context_features)
    return Flow(Sequential(LogitTransform(alpha), body), StandardNormal((c, h, w)))
