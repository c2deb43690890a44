"""Glow (Kingma & Dhariwal 2018): ActNorm, invertible 1x1 convolutions, affine couplings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..core import Bijection, Inverse, Sequential
from ..distributions import ConditionalDiagonalGaussian, Distribution, Flow, StandardNormal
from ..layers.coupling import AffineCoupling, SplineCoupling
from ..layers.elementwise import LogitTransform
from ..layers.masks import channel_mask
from ..layers.normalization import ActNorm
from ..layers.permutation import InvertibleConv1x1
from ..layers.reshape import FactorOut, Squeeze
from ..nets import GlowConvNet
from .nsf import check_spline_model
from .realnvp import check_alpha, check_levels, image_shape
from .registry import check_bool, check_choice, check_int

COUPLINGS = ("affine", "spline")

__all__ = ["build_glow", "glow_step"]


def glow_step(
    channels: int,
    hidden: int = 64,
    clamp: float = 3.0,
    coupling: str = "affine",
    bins: int = 8,
    tail_bound: float = 3.0,
    context_features: int = 0,
) -> Sequential:
    """One Glow step on ``(B, channels, H, W)``: ActNorm -> 1x1 conv -> coupling.

    The coupling keeps the first half of the channels and conditions the second half on
    them through a ``GlowConvNet(hidden)`` (3x3, 1x1, zero-initialised 3x3 conv). It is
    affine (``coupling="affine"``, log-scale soft-clamped to ``clamp``) or a neural-spline
    coupling (``"spline"``: ``bins`` rational-quadratic bins on ``[-tail_bound, tail_bound]``).
    ``context_features=K > 0`` makes the coupling conditional on a ``(B, K)`` context.
    """
    if channels < 2:
        raise ValueError(f"glow_step: need at least 2 channels to split, got {channels}")

    def net(i: int, o: int) -> GlowConvNet:
        return GlowConvNet(i, o, hidden=hidden)

    mask = channel_mask(channels)
    if coupling == "spline":
        last: Bijection = SplineCoupling(mask, net, bins=bins, tail_bound=tail_bound,
                                         context_features=context_features)
    elif coupling == "affine":
        last = AffineCoupling(mask, net, clamp=clamp, context_features=context_features)
    else:
        raise ValueError(f"glow_step: coupling must be one of {COUPLINGS}, got {coupling!r}")
    return Sequential(ActNorm(channels), InvertibleConv1x1(channels), last)


def _glow_level(c: int, levels_left: int, depth: int, step: dict[str, Any]) -> Bijection:
    c4 = 4 * c
    steps: list[Bijection] = [Squeeze()]
    steps += [glow_step(c4, **step) for _ in range(depth)]
    if levels_left > 1:
        steps.append(FactorOut(c4 // 2, _glow_level(c4 // 2, levels_left - 1, depth, step)))
    steps.append(Inverse(Squeeze()))
    return Sequential(*steps)


def build_glow(
    shape: Sequence[int],
    levels: int = 2,
    depth: int = 8,
    hidden: int = 64,
    alpha: float = 0.05,
    coupling: str = "affine",
    bins: int = 8,
    tail_bound: float = 3.0,
    context_features: int = 0,
    class_prior: bool = True,
) -> Flow:
    """Multi-scale Glow for images ``(B, C, H, W)`` with values in [0, 1].

    ``LogitTransform(alpha)``, then per level: ``Squeeze``, ``depth`` Glow steps
    (``glow_step``), and, except on the last level, half of the channels factored out.
    Latents keep the input's layout; base ``StandardNormal(shape)``. H and W must divide
    by ``2**levels`` (28x28 MNIST: ``levels=2``, 28 -> 14 -> 7). ActNorm layers initialise
    from the first training batch (run one training-mode forward before wrapping in DDP).
    ``coupling="spline"`` swaps each affine coupling for a neural-spline one with ``bins``
    bins on ``[-tail_bound, tail_bound]`` (a Glow-like NSF). ``context_features=K > 0``
    gives a conditional flow ``p(x | c)`` with ``c`` of shape ``(B, K)`` fed to every
    coupling's net (``flow.log_prob(x, context=c)``, ``flow.sample(n, context=c)``), and,
    with ``class_prior`` (Glow's class-conditional prior), to the base too: a
    ``ConditionalDiagonalGaussian`` whose mean and scale are a linear map of ``c``. The
    couplings' nets learn to use the context slowly (their output layers start at zero); the
    prior moves every latent of a class at once.
    """
    name = "build_glow"
    c, h, w = image_shape(shape, name)
    check_levels((c, h, w), levels, name)
    check_int(name, "depth", depth)
    check_int(name, "hidden", hidden)
    check_alpha(name, alpha)
    check_choice(name, "coupling", coupling, COUPLINGS)
    tail_bound = check_spline_model(name, bins, tail_bound)
    context_features = check_int(name, "context_features", context_features, minimum=0)
    check_bool(name, "class_prior", class_prior)
    step = {"hidden": hidden, "coupling": coupling, "bins": bins, "tail_bound": tail_bound,
            "context_features": context_features}
    body = _glow_level(c, levels, depth, step)
    base: Distribution = (ConditionalDiagonalGaussian((c, h, w), context_features)
                          if context_features and class_prior else StandardNormal((c, h, w)))
    return Flow(Sequential(LogitTransform(alpha), body), base)
