"""The classifier ladder of Finzi et al. (2019, Table 1): an ordinary CNN made invertible
one change at a time.

Every step is the same 9-convolution network, three stages of three
``[conv 3x3 -> ActNorm -> activation]`` blocks with a downsampling between stages, then a
global mean over positions and a linear head. The steps (``LADDER_STEPS``, in order):

1. ``base``: zero padding, ReLU, ``MaxPool2d(2)``;
2. ``circular``: circular padding instead of zero padding;
3. ``sneaky``: SneakyReLU instead of ReLU;
4. ``checkerboard``: checkerboard (space-to-depth) downsampling instead of max pooling;
5. ``nn``: invertible nearest-neighbour downsampling (``NNDownsample``; the paper's iINN);
6. ``avgpool``: invertible average pooling (``InvertibleAvgPool2d``).

Widths. From step 4 on, the body up to the head is a bijection (``LadderConvNet.body``): it
keeps ``C x H x W`` constant, so the widths are set by the data, not chosen. Images are
zero-padded to sides that are multiples of 8 (28 -> 32 for MNIST, as LeNet-5 did), a fixed
space-to-depth stem gives stage 1 ``4C`` channels at half resolution, and each downsampling
quadruples the channels: ``4C, 16C, 64C`` (4, 16, 64 for grey images). Steps 1-3 use the
same widths, with the first convolution of stages 2 and 3 widening ``C -> 4C`` after the max
pooling, so that each step changes one thing. The convolutions of steps 4-6 are
``CircularConv2d`` (exact FFT inverse); those of steps 1-3 are ``nn.Conv2d``. A kernel
larger than its stage's image shrinks to the largest odd size that fits (small inputs such
as 8x8 digits).

The SneakyReLU slope defaults to 0.5: at 0.3 the float32 reconstruction of MNIST test
images from the features lost up to 6e-4 (relative), at 0.5 less than 1e-4, for a few tenths
of a point of accuracy (benchmarks/results/classifier_ladder.md). ``sv_bound = b`` keeps
every circular convolution's singular values in ``[1/b, b]`` when training projects them
(``--sv-clip-every``); the default 20 is the layer's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from ..core import Bijection, Sequential
from ..layers.circular_conv import CircularConv2d
from ..layers.downsampling import InvertibleAvgPool2d, NNDownsample
from ..layers.elementwise import Scale, SneakyReLU
from ..layers.normalization import ActNorm
from ..layers.padding import circular_pad
from ..layers.reshape import Squeeze
from .iconvnet import fitting_kernel
from .registry import ModelError, check_choice, check_int, check_real

__all__ = ["LADDER_STEPS", "LadderConvNet", "build_convnet"]

LADDER_STEPS = ("base", "circular", "sneaky", "checkerboard", "nn", "avgpool")
_INVERTIBLE_DOWNSAMPLERS: dict[str, Callable[[], Bijection]] = {
    "checkerboard": Squeeze,
    "nn": NNDownsample,
    "avgpool": InvertibleAvgPool2d,
}
STAGES = 3
BLOCKS_PER_STAGE = 3
# The stem and the two downsamplings between stages halve the sides three times.
_MULTIPLE = 2**STAGES
# The head's input: the whole final feature map, or its mean over positions (the paper's).
HEADS = ("flatten", "mean")


class _CircularPadConv2d(nn.Conv2d):
    """``nn.Conv2d`` on a circularly padded input, through ``circular_pad``: the same map as
    ``padding_mode="circular"``, whose ``F.pad`` backward is slower (this step took 1.64x
    the base's time per epoch with it, 1.5x with this; classifier_ladder_timing.md)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(circular_pad(x, self.kernel_size[0] // 2), self.weight, self.bias)


class _Layer(nn.Module):
    """A bijection used as a plain layer in the non-invertible steps (log-det dropped)."""

    def __init__(self, bijection: Bijection) -> None:
        super().__init__()
        self.bijection = bijection

    def forward(self, x: Tensor) -> Tensor:
        return self.bijection.transform(x)


def _padding(h: int, w: int) -> tuple[int, int, int, int]:
    """``(left, right, top, bottom)`` zero padding up to sides divisible by 8."""
    ph, pw = -h % _MULTIPLE, -w % _MULTIPLE
    return pw // 2, pw - pw // 2, ph // 2, ph - ph // 2


class LadderConvNet(nn.Module):
    """One step of the ladder on images ``(B, C, H, W)`` in [0, 1]; ``forward`` gives logits
    ``(B, n_classes)``. See the module docstring for the architecture.

    ``features(x)`` is the body's output ``(B, 64C, H'/8, W'/8)`` (``H', W'`` the padded
    sides); ``invert(f)`` takes it back to the image for the invertible steps
    (``invertible``), and raises ``ModelError`` for the others.
    """

    def __init__(self, shape: tuple[int, int, int], n_classes: int, step: str = "avgpool",
                 kernel_size: int = 3, slope: float = 0.5, head: str = "flatten",
                 sv_bound: float = 20.0) -> None:
        super().__init__()
        if step not in LADDER_STEPS:
            raise ValueError(f"LadderConvNet: step must be one of {LADDER_STEPS}, got {step!r}")
        c, h, w = (int(s) for s in shape)
        self.shape = (c, h, w)
        self.step = step
        self.n_classes = int(n_classes)
        if head not in HEADS:
            raise ValueError(f"LadderConvNet: head must be one of {HEADS}, got {head!r}")
        self.config = {"step": step, "kernel_size": kernel_size, "slope": slope, "head": head,
                       "sv_bound": sv_bound}
        self.sv_bound = float(sv_bound)
        self.pad = _padding(h, w)
        hp, wp = h + self.pad[2] + self.pad[3], w + self.pad[0] + self.pad[1]
        rung = LADDER_STEPS.index(step)
        self.invertible = rung >= LADDER_STEPS.index("checkerboard")
        widths = [4 * c * 4**s for s in range(STAGES)]
        layers: list[nn.Module | Bijection] = [Scale(1.0, -0.5), Squeeze()]
        size = (hp // 2, wp // 2)
        for s, width in enumerate(widths):
            if s:
                if self.invertible:
                    layers.append(_INVERTIBLE_DOWNSAMPLERS[step]())
                else:
                    layers.append(nn.MaxPool2d(2))
                size = (size[0] // 2, size[1] // 2)
            for b in range(BLOCKS_PER_STAGE):
                c_in = widths[s - 1] if (s and b == 0 and not self.invertible) else width
                k = fitting_kernel(kernel_size, *size)
                layers += [self._conv(c_in, width, k, rung, size, self.sv_bound),
                           ActNorm(width)]
                layers.append(nn.ReLU() if rung < LADDER_STEPS.index("sneaky")
                              else SneakyReLU(slope))
        self.feature_shape = (widths[-1], *size)
        self.body: nn.Module
        if self.invertible:
            self.body = Sequential(*[m for m in layers if isinstance(m, Bijection)])
        else:
            self.body = nn.Sequential(*[_Layer(m) if isinstance(m, Bijection) else m
                                        for m in layers])
        n_features = widths[-1] * (size[0] * size[1] if head == "flatten" else 1)
        self.head_kind = head
        self.head = nn.Linear(n_features, self.n_classes)

    @staticmethod
    def _conv(c_in: int, c_out: int, k: int, rung: int, size: tuple[int, int],
              sv_bound: float) -> nn.Module:
        if rung >= LADDER_STEPS.index("checkerboard"):
            return CircularConv2d(c_out, k, bias=False, image_size=size,
                                  sv_bounds=(1 / sv_bound, sv_bound))
        if rung == 0:
            return nn.Conv2d(c_in, c_out, k, padding=k // 2, padding_mode="zeros", bias=False)
        return _CircularPadConv2d(c_in, c_out, k, bias=False)

    def _padded(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.shape:
            raise ModelError(f"LadderConvNet: expected images of shape (B, {', '.join(map(str, self.shape))}), got {tuple(x.shape)}")
        return F.pad(x, self.pad) if any(self.pad) else x

    def features(self, x: Tensor) -> Tensor:
        """Images ``(B, C, H, W)`` in [0, 1] -> the final feature map, before the head."""
        h = self._padded(x)
        if isinstance(self.body, Sequential):
            return self.body.transform(h)
        return self.body(h)

    def forward(self, x: Tensor) -> Tensor:
        """Images ``(B, C, H, W)`` in [0, 1] -> class logits ``(B, n_classes)``."""
        f = self.features(x)
        return self.head(f.flatten(1) if self.head_kind == "flatten" else f.mean(dim=(2, 3)))

    def invert(self, features: Tensor) -> Tensor:
        """The feature map ``(B, *feature_shape)`` -> the image ``(B, C, H, W)`` it came from."""
        if not isinstance(self.body, Sequential):
            raise ModelError(
                f"ladder step '{self.step}' is not invertible (max pooling and widening "
                "convolutions discard information); the invertible steps are "
                + ", ".join(_INVERTIBLE_DOWNSAMPLERS))
        x = self.body.inverse(features)[0]
        left, right, top, bottom = self.pad
        return x[..., top: x.shape[-2] - bottom, left: x.shape[-1] - right]

    def convolutions(self) -> list[CircularConv2d]:
        return [m for m in self.modules() if isinstance(m, CircularConv2d)]

    def condition_numbers(self) -> list[float]:
        """Condition number of each circular convolution at its own stage's size."""
        return [m.condition_number() for m in self.convolutions()]

    def extra_repr(self) -> str:
        return f"shape={self.shape}, n_classes={self.n_classes}, step={self.step!r}"


def build_convnet(shape: tuple[int, ...], n_classes: int, step: str = "avgpool",
                  kernel_size: int = 3, slope: float = 0.5, head: str = "flatten",
                  sv_bound: float = 20.0, **unknown: Any) -> LadderConvNet:
    """A ladder classifier for images of ``shape = (C, H, W)``; options it cannot honour
    raise ``ModelError``."""
    name = "convnet"
    if unknown:
        raise ModelError(f"{name} has no option '{min(unknown)}' (options: step, "
                         "kernel_size, slope, head, sv_bound)")
    if len(shape) != 3:
        raise ModelError(f"{name} is for images (C, H, W), not data of shape {tuple(shape)}")
    check_choice(name, "step", step, LADDER_STEPS)
    if check_int(name, "kernel_size", kernel_size) % 2 == 0:
        raise ModelError(f"{name}: kernel_size must be odd, got {kernel_size}")
    check_real(name, "slope", slope, lambda v: 0 < v <= 1, "in (0, 1]")
    check_choice(name, "head", head, HEADS)
    check_real(name, "sv_bound", sv_bound, lambda v: v > 1, "> 1")
    c, h, w = (int(s) for s in shape)
    return LadderConvNet((c, h, w), check_int(name, "n_classes", n_classes, minimum=2), step,
                         kernel_size, slope, head, sv_bound)
