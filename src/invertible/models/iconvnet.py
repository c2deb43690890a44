"""The i-ConvNet of Finzi et al. (2019): a fully convolutional, multi-scale normalizing flow.

Data ``x`` in [0, 1] (dequantized ``(k + u) / n_bins``) goes through a logit, then scales
of ``depth`` blocks ``[CircularConv2d -> ActNorm -> SneakyReLU]`` closed by a linear
``[CircularConv2d -> ActNorm]``. Between scales an invertible 2x2 downsampling
quadruples the channels and half of them are factored out as latents (RealNVP/Glow
multi-scale). Latents are laid out like the input, so the base is ``StandardNormal(shape)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Literal, TypedDict

import torch
from torch import Tensor, nn

from ..core import Bijection, Inverse, Sequential
from ..distributions import Flow, StandardNormal
from ..layers.circular_conv import CircularConv2d
from ..layers.coupling import AffineCoupling
from ..layers.downsampling import HaarDownsample, InvertibleAvgPool2d, NNDownsample
from ..layers.elementwise import LogitTransform, SneakyReLU
from ..layers.masks import channel_mask, checkerboard_mask
from ..layers.normalization import ActNorm
from ..layers.reshape import FactorOut, Squeeze
from ..nets import ConvResNet, GlowConvNet
from .realnvp import image_shape
from .registry import ModelError, check_bool, check_choice, check_halvings, check_int, check_real

__all__ = ["ConvolutionHealth", "IConvNet", "build_iconvnet"]

Downsample = Literal["checkerboard", "nn", "avgpool", "haar"]
# Why a pure i-ConvNet cannot be conditional: its layers have no network to read a context.
NO_CONDITIONER = ("the pure i-ConvNet has no conditioner network to take a context "
                  "(context_features > 0); use hybrid=true, whose couplings read it")
Linalg = Literal["complex", "real"]
CouplingNet = Literal["glow", "resnet"]


class IConvNetConfig(TypedDict):
    """``IConvNet.config``: the architecture options, as passed to the constructor."""

    levels: int
    depth: int
    kernel_size: int
    downsample: Downsample
    hybrid: bool
    stem: bool
    keep: float
    slope: float
    actnorm: bool
    logit_alpha: float | None
    linalg: Linalg
    coupling_hidden: int
    coupling_net: CouplingNet
    context_features: int


class _ConvOptions(TypedDict):
    """Keyword arguments shared by every ``CircularConv2d`` of an ``IConvNet``."""

    linalg: Linalg
    strict: bool

_DOWNSAMPLERS: dict[str, Callable[[], Bijection]] = {
    "checkerboard": Squeeze,
    "nn": NNDownsample,
    "avgpool": InvertibleAvgPool2d,
    "haar": HaarDownsample,
}


def fitting_kernel(k: int, h: int, w: int) -> int:
    """The largest odd kernel size <= k that fits an h x w image."""
    fit = min(k, h, w)
    return fit if fit % 2 else fit - 1


class ConvolutionHealth(nn.Module):
    """Numerical-health helpers for a model made of ``CircularConv2d`` layers (a mixin)."""

    def convolutions(self) -> list[CircularConv2d]:
        return [m for m in self.modules() if isinstance(m, CircularConv2d)]

    def condition_numbers(self) -> list[float]:
        """The condition number of each convolution at its own scale's image size."""
        return [m.condition_number() for m in self.convolutions()]

    def conditioning_penalty(self) -> Tensor:
        """Sum of the convolutions' singular-value barriers; add ``lambda *`` it to the loss."""
        convs = self.convolutions()
        return torch.stack([m.conditioning_penalty() for m in convs]).sum()

    @torch.no_grad()
    def clip_singular_values_(self) -> bool:
        """One singular-value clipping projection of every convolution (after a step);
        whether any kernel changed."""
        # A list, not a generator: any() would stop clipping at the first change.
        return any([m.clip_singular_values_() for m in self.convolutions()])  # noqa: C419


class IConvNet(ConvolutionHealth, Bijection):
    """i-ConvNet bijection on ``(B, C, H, W)`` images in [0, 1]; latents of the same shape.

    ``levels`` scales; with ``stem=True`` (default) the input is downsampled once before the
    first scale (Glow-style, so a 1-channel image is mixed over 4 channels from the start),
    and each later scale runs at half the previous resolution on ``keep`` of the
    downsampled channels (default half). ``H`` and ``W`` must be divisible by
    ``2 ** (levels - 1 + stem)``. Kernels that do not fit a small scale shrink to the
    largest odd size that does (down to 1x1).

    ``hybrid=True`` adds an ``AffineCoupling`` after every block, with alternating channel
    halves (or a checkerboard when a scale has one channel), whose network has width
    ``coupling_hidden``: a one-block ``ConvResNet`` (``coupling_net="resnet"``, the default,
    so that runs saved before the option existed rebuild) or Glow's 3x3 -> 1x1 -> 3x3
    (``"glow"``: a third of the cost at equal width; what the MNIST benchmark uses). The
    pure design is ``hybrid=False``.
    ``actnorm=False`` uses the convolutions' own bias instead of ActNorm.
    ``logit_alpha=None`` drops the logit preprocessing (then the input is any real image).
    ``context_features=K > 0`` (hybrid only: the couplings are the conditioners) makes it
    conditional: ``forward(x, context=c)`` with ``c`` of shape ``(B, K)``.
    """

    def __init__(
        self,
        shape: tuple[int, int, int],
        levels: int = 2,
        depth: int = 4,
        kernel_size: int = 3,
        downsample: Downsample = "checkerboard",
        hybrid: bool = False,
        *,
        stem: bool = True,
        keep: float = 0.5,
        slope: float = 0.2,
        actnorm: bool = True,
        logit_alpha: float | None = 0.05,
        linalg: Linalg = "complex",
        coupling_hidden: int = 32,
        coupling_net: CouplingNet = "resnet",
        context_features: int = 0,
        strict: bool = False,
    ) -> None:
        super().__init__()
        name = "IConvNet"
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"{name}: shape must be (C, H, W) with positive sizes, got {shape}")
        if levels < 1 or depth < 0:
            raise ValueError(f"{name}: need levels >= 1 and depth >= 0, got {levels}, {depth}")
        if downsample not in _DOWNSAMPLERS:
            raise ValueError(
                f"{name}: downsample must be one of {sorted(_DOWNSAMPLERS)}, got {downsample!r}"
            )
        if not 0 < keep < 1:
            raise ValueError(f"{name}: keep must be a fraction in (0, 1), got {keep}")
        if coupling_net not in ("glow", "resnet"):
            raise ValueError(f"{name}: coupling_net must be 'glow' or 'resnet', got {coupling_net!r}")
        if context_features and not hybrid:
            raise ValueError(f"{name}: {NO_CONDITIONER}")
        c, h, w = (int(s) for s in shape)
        hint = f"levels={levels}, stem={str(stem).lower()}; use fewer levels or stem=false"
        check_halvings(name, h, w, levels - 1 + int(stem), hint)  # a ModelError
        self.shape = (c, h, w)
        self.config: IConvNetConfig = {
            "levels": levels,
            "depth": depth,
            "kernel_size": kernel_size,
            "downsample": downsample,
            "hybrid": hybrid,
            "stem": stem,
            "keep": keep,
            "slope": slope,
            "actnorm": actnorm,
            "logit_alpha": logit_alpha,
            "linalg": linalg,
            "coupling_hidden": coupling_hidden,
            "coupling_net": coupling_net,
            "context_features": context_features,
        }
        self._conv_kw: _ConvOptions = {"linalg": linalg, "strict": strict}
        parts: list[Bijection] = []
        if logit_alpha is not None:
            parts.append(LogitTransform(logit_alpha))
        if stem:
            parts += [
                _DOWNSAMPLERS[downsample](),
                self._scale(4 * c, h // 2, w // 2, levels),
                Inverse(_DOWNSAMPLERS[downsample]()),
            ]
        else:
            parts.append(self._scale(c, h, w, levels))
        self.net = Sequential(*parts)

    def _linear(self, c: int, h: int, w: int) -> list[Bijection]:
        cfg = self.config
        k = fitting_kernel(cfg["kernel_size"], h, w)
        conv = CircularConv2d(c, k, bias=not cfg["actnorm"], image_size=(h, w), **self._conv_kw)
        return [conv, ActNorm(c)] if cfg["actnorm"] else [conv]

    def _coupling(self, c: int, h: int, w: int, i: int) -> Bijection:
        hidden, k = self.config["coupling_hidden"], self.config["context_features"]

        def net(n_in: int, n_out: int) -> nn.Module:
            if self.config["coupling_net"] == "glow":
                return GlowConvNet(n_in, n_out, hidden)
            return ConvResNet(n_in, n_out, hidden, blocks=1)

        if c >= 2:
            return AffineCoupling(channel_mask(c, flip=bool(i % 2)), net, context_features=k)
        return AffineCoupling(checkerboard_mask(h, w, flip=bool(i % 2)), net,
                              context_features=k)

    def _scale(self, c: int, h: int, w: int, levels_left: int) -> Sequential:
        cfg = self.config
        layers: list[Bijection] = []
        for i in range(cfg["depth"]):
            layers += [*self._linear(c, h, w), SneakyReLU(cfg["slope"])]
            if cfg["hybrid"]:
                layers.append(self._coupling(c, h, w, i))
        layers += self._linear(c, h, w)
        if levels_left > 1:
            keep = max(1, min(4 * c - 1, round(cfg["keep"] * 4 * c)))
            down = _DOWNSAMPLERS[cfg["downsample"]]
            layers += [
                down(),
                FactorOut(keep, self._scale(keep, h // 2, w // 2, levels_left - 1)),
                Inverse(down()),
            ]
        return Sequential(*layers)

    @property
    def takes_context(self) -> bool:  # type: ignore[override]
        return self.net.takes_context

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(x, [("B", *self.shape)])
        return self.net(x, context)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(z, [("B", *self.shape)])
        return self.net.inverse(z, context)

    def extra_repr(self) -> str:
        return f"shape={self.shape}, " + ", ".join(f"{k}={v!r}" for k, v in self.config.items())


def _check_options(
    shape: tuple[int, int, int],
    levels: int,
    depth: int,
    kernel_size: int,
    downsample: str,
    hybrid: bool,
    options: dict[str, Any],
) -> None:
    """Raise ``ModelError`` for options of ``build_iconvnet`` that ``IConvNet`` cannot take."""
    name = "build_iconvnet"
    params = inspect.signature(IConvNet).parameters.values()
    defaults = {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
    for key in options:
        if key not in defaults:
            known = sorted({"levels", "depth", "kernel_size", "downsample", "hybrid", *defaults})
            raise ModelError(f"{name} has no option '{key}' (options: {', '.join(known)})")
    kw = {**defaults, **options}
    image_shape(shape, name)
    check_int(name, "levels", levels)
    check_int(name, "depth", depth, minimum=0)
    if check_int(name, "kernel_size", kernel_size) % 2 == 0:
        raise ModelError(f"{name}: kernel_size must be odd, got {kernel_size}")
    check_choice(name, "downsample", downsample, _DOWNSAMPLERS)
    check_bool(name, "hybrid", hybrid)
    for key in ("stem", "actnorm", "strict"):
        check_bool(name, key, kw[key])
    check_real(name, "keep", kw["keep"], lambda v: 0 < v < 1, "in (0, 1)")
    check_real(name, "slope", kw["slope"], lambda v: 0 < v <= 1, "in (0, 1]")
    if kw["logit_alpha"] is not None:
        check_real(name, "logit_alpha", kw["logit_alpha"], lambda v: 0 <= v < 0.5, "in [0, 0.5)")
    check_choice(name, "linalg", kw["linalg"], ("complex", "real"))
    check_int(name, "coupling_hidden", kw["coupling_hidden"])
    check_choice(name, "coupling_net", kw["coupling_net"], ("glow", "resnet"))
    if check_int(name, "context_features", kw["context_features"], minimum=0) and not hybrid:
        raise ModelError(f"{name}: {NO_CONDITIONER}")


def build_iconvnet(
    shape: tuple[int, int, int],
    levels: int = 2,
    depth: int = 4,
    kernel_size: int = 3,
    downsample: Downsample = "checkerboard",
    hybrid: bool = False,
    **kwargs: Any,
) -> Flow:
    """An i-ConvNet ``Flow`` for images of ``shape = (C, H, W)`` scaled to [0, 1].

    The base is ``StandardNormal(shape)``; ``flow.bits_per_dim(x, n_bins)`` takes
    dequantized ``x = (k + u) / n_bins``. Keyword arguments go to ``IConvNet``. Options it
    cannot honour (unknown names, wrong types, ranges, image sizes) raise ``ModelError``.
    """
    _check_options(shape, levels, depth, kernel_size, downsample, hybrid, kwargs)
    net = IConvNet(shape, levels, depth, kernel_size, downsample, hybrid, **kwargs)
    return Flow(net, StandardNormal(shape))
