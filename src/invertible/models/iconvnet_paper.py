"""The i-ConvNet as the paper's code builds it (Finzi et al. 2019, flowgmm's ``iCNN3d``).

``--model iconvnet-paper``. Data ``x`` in [0, 1] goes through a logit, then ``levels``
scales of ``depth`` blocks ``[CircularConv2d -> SneakyReLU(slope)]`` with an invertible
2x2 average pooling between scales (channels x4, resolution /2), and one closing
``CircularConv2d``. Nothing is factored out and nothing is normalised: every scale works
on all the channels of the pooled image.

Differences from the default ``IConvNet`` (``--model iconvnet``), which is a redesign:

* no stem downsampling before the first scale (the paper's first scale sees the raw
  image, so a 1-channel image is mixed only spatially there);
* no ActNorm: each convolution has its own bias;
* SneakyReLU slope 0.1, not 0.2;
* average pooling (log-det ``log 1/4`` per block), not a checkerboard squeeze;
* no factor-out: the last scale carries ``4^(levels-1)`` channels of every image;
* one closing linear convolution at the end, not one per scale;
* no optional affine couplings (``hybrid``).

The pooled latent ``(C 4^(L-1), H / 2^(L-1), W / 2^(L-1))`` is laid back out as
``(C, H, W)`` by the inverse of a checkerboard squeeze, a permutation (log-det 0), so the
base is ``StandardNormal(shape)`` like every other image model and the density is exactly
the paper's. The logit is RealNVP's with ``alpha = 0.05``, the paper code's
``cnstr = 0.9`` (``logit(0.05 + 0.9 x)``).
"""

from __future__ import annotations

from torch import Tensor

from ..core import Bijection, Inverse, Sequential
from ..distributions import Flow, StandardNormal
from ..layers.circular_conv import CircularConv2d
from ..layers.downsampling import InvertibleAvgPool2d
from ..layers.elementwise import LogitTransform, SneakyReLU
from ..layers.reshape import Squeeze
from .iconvnet import ConvolutionHealth, fitting_kernel
from .realnvp import image_shape
from .registry import ModelError, check_halvings, check_int, check_real

__all__ = ["PaperIConvNet", "build_iconvnet_paper", "paper_levels"]

# The paper's 32x32 networks pool three times (four scales); more would leave 2x2 images.
_MAX_LEVELS = 4


def paper_levels(h: int, w: int) -> int:
    """Scales for an ``h x w`` image: pool while both sides halve evenly and stay >= 4."""
    levels = 1
    while levels < _MAX_LEVELS and h % 2 == 0 and w % 2 == 0 and min(h, w) // 2 >= 4:
        h, w, levels = h // 2, w // 2, levels + 1
    return levels


class PaperIConvNet(ConvolutionHealth, Bijection):
    """The paper's i-ConvNet on ``(B, C, H, W)`` images in [0, 1]; latents of the same shape.

    ``levels`` scales of ``depth`` ``[CircularConv2d(k) -> SneakyReLU(slope)]`` blocks,
    average pooling between them, a closing convolution; see the module docstring for how
    it differs from ``IConvNet``. ``H`` and ``W`` must be divisible by ``2**(levels-1)``;
    kernels that do not fit a small scale shrink to the largest odd size that does.
    """

    def __init__(
        self,
        shape: tuple[int, int, int],
        levels: int = 3,
        depth: int = 3,
        kernel_size: int = 3,
        slope: float = 0.1,
        logit_alpha: float = 0.05,
    ) -> None:
        super().__init__()
        c, h, w = (int(s) for s in shape)
        if levels < 1 or depth < 0:
            raise ValueError(f"PaperIConvNet: need levels >= 1, depth >= 0, got {levels}, {depth}")
        hint = f"levels={levels} pools {levels - 1} times; use fewer levels"
        check_halvings("PaperIConvNet", h, w, levels - 1, hint)  # a ModelError
        self.shape = (c, h, w)
        self.config = {"levels": levels, "depth": depth, "kernel_size": kernel_size,
                       "slope": slope, "logit_alpha": logit_alpha}
        parts: list[Bijection] = [LogitTransform(logit_alpha)]
        for level in range(levels):
            if level:
                parts.append(InvertibleAvgPool2d())
                c, h, w = 4 * c, h // 2, w // 2
            k = fitting_kernel(kernel_size, h, w)
            for _ in range(depth):
                parts += [CircularConv2d(c, k, image_size=(h, w)), SneakyReLU(slope)]
        parts.append(CircularConv2d(c, fitting_kernel(kernel_size, h, w), image_size=(h, w)))
        # A permutation back to the data's layout (see the module docstring).
        parts += [Inverse(Squeeze()) for _ in range(levels - 1)]
        self.net = Sequential(*parts)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x, [("B", *self.shape)])
        return self.net(x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._check(z, [("B", *self.shape)])
        return self.net.inverse(z)

    def extra_repr(self) -> str:
        return f"shape={self.shape}, " + ", ".join(f"{k}={v!r}" for k, v in self.config.items())


def build_iconvnet_paper(
    shape: tuple[int, int, int],
    levels: int | None = None,
    depth: int = 3,
    kernel_size: int = 3,
    slope: float = 0.1,
    logit_alpha: float = 0.05,
) -> Flow:
    """The paper-faithful i-ConvNet ``Flow`` for images of ``shape = (C, H, W)`` in [0, 1].

    ``levels=None`` picks ``paper_levels(H, W)`` (4 on 32x32 as in the paper, 3 on MNIST's
    28x28). Options it cannot honour raise ``ModelError``.
    """
    name = "build_iconvnet_paper"
    _, h, w = image_shape(shape, name)
    levels = paper_levels(h, w) if levels is None else check_int(name, "levels", levels)
    check_int(name, "depth", depth, minimum=0)
    if check_int(name, "kernel_size", kernel_size) % 2 == 0:
        raise ModelError(f"{name}: kernel_size must be odd, got {kernel_size}")
    check_real(name, "slope", slope, lambda v: 0 < v <= 1, "in (0, 1]")
    check_real(name, "logit_alpha", logit_alpha, lambda v: 0 <= v < 0.5, "in [0, 0.5)")
    net = PaperIConvNet(shape, levels, depth, kernel_size, slope, logit_alpha)
    return Flow(net, StandardNormal(shape))
