"""Glow (Kingma & Dhariwal 2018): ActNorm, invertible 1x1 convolutions, affine couplings."""

from __future__ import annotations

from collections.abc import Sequence

from ..core import Bijection, Inverse, Sequential
from ..distributions import Flow, StandardNormal
from ..layers.coupling import AffineCoupling
from ..layers.elementwise import LogitTransform
from ..layers.masks import channel_mask
from ..layers.normalization import ActNorm
from ..layers.permutation import InvertibleConv1x1
from ..layers.reshape import FactorOut, Squeeze
from ..nets import GlowConvNet
from .realnvp import check_alpha, check_levels, image_shape
from .registry import check_int

__all__ = ["build_glow", "glow_step"]


def glow_step(channels: int, hidden: int = 64, clamp: float = 3.0) -> Sequential:
    """One Glow step on ``(B, channels, H, W)``: ActNorm -> 1x1 conv -> affine coupling.

    The coupling keeps the first half of the channels and conditions the second half on
    them through a ``GlowConvNet(hidden)`` (3x3, 1x1, zero-initialised 3x3 conv).
    """
    if channels < 2:
        raise ValueError(f"glow_step: need at least 2 channels to split, got {channels}")

    def net(i: int, o: int) -> GlowConvNet:
        return GlowConvNet(i, o, hidden=hidden)

    return Sequential(
        ActNorm(channels),
        InvertibleConv1x1(channels),
        AffineCoupling(channel_mask(channels), net, clamp=clamp),
    )


def _glow_level(c: int, levels_left: int, depth: int, hidden: int) -> Bijection:
    c4 = 4 * c
    steps: list[Bijection] = [Squeeze()]
    steps += [glow_step(c4, hidden) for _ in range(depth)]
    if levels_left > 1:
        steps.append(FactorOut(c4 // 2, _glow_level(c4 // 2, levels_left - 1, depth, hidden)))
    steps.append(Inverse(Squeeze()))
    return Sequential(*steps)


def build_glow(
    shape: Sequence[int],
    levels: int = 2,
    depth: int = 8,
    hidden: int = 64,
    alpha: float = 0.05,
) -> Flow:
    """Multi-scale Glow for images ``(B, C, H, W)`` with values in [0, 1].

    ``LogitTransform(alpha)``, then per level: ``Squeeze``, ``depth`` Glow steps
    (``glow_step``), and, except on the last level, half of the channels factored out.
    Latents keep the input's layout; base ``StandardNormal(shape)``. H and W must divide
    by ``2**levels`` (28x28 MNIST: ``levels=2``, 28 -> 14 -> 7). ActNorm layers initialise
    from the first training batch (run one training-mode forward before wrapping in DDP).
    """
    name = "build_glow"
    c, h, w = image_shape(shape, name)
    check_levels((c, h, w), levels, name)
    check_int(name, "depth", depth)
    check_int(name, "hidden", hidden)
    check_alpha(name, alpha)
    body = _glow_level(c, levels, depth, hidden)
    return Flow(Sequential(LogitTransform(alpha), body), StandardNormal((c, h, w)))
