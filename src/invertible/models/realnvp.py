"""RealNVP (Dinh et al. 2017): affine coupling flows for vectors and multi-scale images."""

from __future__ import annotations

from collections.abc import Sequence

from ..core import Bijection, Inverse, Sequential
from ..distributions import Flow, StandardNormal
from ..layers.coupling import AffineCoupling
from ..layers.masks import alternating_mask, channel_mask, checkerboard_mask
from ..layers.preprocessing import LogitTransform
from ..layers.reshape import FactorOut, Squeeze
from ..nets import MLP, ConvResNet

__all__ = ["build_realnvp", "build_realnvp_2d", "check_levels", "image_shape"]


def build_realnvp_2d(dim: int = 2, depth: int = 8, hidden: int = 64, layers: int = 2) -> Flow:
    """Vector RealNVP on ``(B, dim)``: ``depth`` affine couplings with alternating masks.

    Each coupling's conditioner is an ``MLP`` with ``layers`` hidden layers of width
    ``hidden``; consecutive couplings swap the roles of even and odd coordinates. Base
    ``StandardNormal((dim,))``. The data is taken as is (standardise it beforehand).
    """
    if dim < 2:
        raise ValueError(f"build_realnvp_2d: dim must be >= 2 for a coupling, got {dim}")
    if depth < 1:
        raise ValueError(f"build_realnvp_2d: depth must be >= 1, got {depth}")

    def net(i: int, o: int) -> MLP:
        return MLP(i, o, hidden=hidden, layers=layers)

    steps = [AffineCoupling(alternating_mask(dim, flip=k % 2 == 1), net) for k in range(depth)]
    return Flow(Sequential(*steps), StandardNormal((dim,)))


def image_shape(shape: Sequence[int], name: str) -> tuple[int, int, int]:
    """Validate a ``(C, H, W)`` event shape for an image model."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"{name}: shape must be (C, H, W) with positive sizes, got {shape}")
    return shape  # type: ignore[return-value]


def check_levels(shape: tuple[int, int, int], levels: int, name: str) -> None:
    """Each of ``levels`` squeezes halves H and W, so both must divide by ``2**levels``."""
    if levels < 1:
        raise ValueError(f"{name}: levels must be >= 1, got {levels}")
    _, h, w = shape
    f = 2**levels
    if h % f or w % f:
        raise ValueError(
            f"{name}: {levels} levels need H and W divisible by {f}, got {h}x{w} (use fewer levels)"
        )


def _realnvp_scale(
    c: int, h: int, w: int, levels_left: int, depth: int, hidden: int, blocks: int
) -> Bijection:
    def net(i: int, o: int) -> ConvResNet:
        return ConvResNet(i, o, hidden=hidden, blocks=blocks)

    def checkerboards(c: int, h: int, w: int) -> list[Bijection]:
        return [
            AffineCoupling(checkerboard_mask(h, w, flip=k % 2 == 1), net, channels=c)
            for k in range(depth)
        ]

    steps = checkerboards(c, h, w)
    if levels_left == 0:
        return Sequential(*steps)
    c4, h2, w2 = 4 * c, h // 2, w // 2
    steps.append(Squeeze())
    steps += [AffineCoupling(channel_mask(c4, flip=k % 2 == 1), net) for k in range(depth)]
    inner = _realnvp_scale(c4 // 2, h2, w2, levels_left - 1, depth, hidden, blocks)
    steps += [FactorOut(c4 // 2, inner), Inverse(Squeeze())]
    return Sequential(*steps)


def build_realnvp(
    shape: Sequence[int],
    levels: int = 2,
    depth: int = 4,
    hidden: int = 32,
    blocks: int = 1,
    alpha: float = 0.05,
) -> Flow:
    """Multi-scale RealNVP for images ``(B, C, H, W)`` with values in [0, 1].

    ``LogitTransform(alpha)``, then per level: ``depth`` checkerboard couplings, a
    ``Squeeze``, ``depth`` channel couplings, and half of the channels factored out; the
    rest goes on to the next level, and the last one ends with ``depth`` checkerboard
    couplings. Conditioners are ``ConvResNet(hidden, blocks)``. Latents keep the input's
    layout, base ``StandardNormal(shape)``. H and W must divide by ``2**levels``.
    For 28x28 MNIST, ``levels=2`` (28 -> 14 -> 7).
    """
    c, h, w = image_shape(shape, "build_realnvp")
    check_levels((c, h, w), levels, "build_realnvp")
    if depth < 1 or hidden < 1 or blocks < 0:
        raise ValueError(
            f"build_realnvp: need depth >= 1, hidden >= 1, blocks >= 0; got {depth}, "
            f"{hidden}, {blocks}"
        )
    if (h >> levels) * (w >> levels) < 2:
        raise ValueError(
            f"build_realnvp: after {levels} squeezes a {h}x{w} image is "
            f"{h >> levels}x{w >> levels}, too small for a checkerboard (use fewer levels)"
        )
    body = _realnvp_scale(c, h, w, levels, depth, hidden, blocks)
    return Flow(Sequential(LogitTransform(alpha), body), StandardNormal((c, h, w)))
