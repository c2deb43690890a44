"""Invertible 2x2 downsampling: ``(B, C, H, W) -> (B, 4C, H/2, W/2)``, H and W even.

Each maps the four pixels ``(a, b, c, d)`` of a 2x2 block (``a`` top-left, ``b``
top-right, ``c`` bottom-left, ``d`` bottom-right) to four coefficients, laid out as four
channel blocks: output channel ``k * C + c`` holds coefficient ``k`` of input channel
``c``. Block 0 is always the coarse image (a pixel, the mean, or the Haar low-pass), so
``FactorOut(keep >= C, ...)`` after a downsampling keeps the coarse image at the next scale.
``Squeeze`` (in ``reshape``) is the plain checkerboard rearrangement.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..core import Bijection, InvalidInputError

__all__ = ["HaarDownsample", "InvertibleAvgPool2d", "NNDownsample"]

# The four pixels of each 2x2 block, or their four mixed coefficients.
_Quad = tuple[Tensor, Tensor, Tensor, Tensor]


class _BlockDownsample(Bijection):
    """Shared plumbing: split into 2x2 blocks, mix the four pixels, restack."""

    def _blocks(self, x: Tensor) -> _Quad:
        self._check(x, [("B", "C", "H", "W")])
        h, w = x.shape[-2:]
        if h % 2 or w % 2:
            raise InvalidInputError(
                f"{type(self).__name__}: height and width must be even, got {h}x{w}"
            )
        return x[..., 0::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 0::2], x[..., 1::2, 1::2]

    def _coefficients(self, z: Tensor) -> tuple[Tensor, ...]:
        self._check(z, [("B", "C", "H", "W")])
        if z.shape[1] % 4:
            raise InvalidInputError(
                f"{type(self).__name__}: inverse needs a channel count divisible by 4, "
                f"got {z.shape[1]}"
            )
        return tuple(torch.chunk(z, 4, dim=1))

    @staticmethod
    def _unblock(a: Tensor, b: Tensor, c: Tensor, d: Tensor) -> Tensor:
        n, ch, h, w = a.shape
        x = a.new_empty(n, ch, 2 * h, 2 * w)
        x[..., 0::2, 0::2] = a
        x[..., 0::2, 1::2] = b
        x[..., 1::2, 0::2] = c
        x[..., 1::2, 1::2] = d
        return x

    def _mix(self, a: Tensor, b: Tensor, c: Tensor, d: Tensor) -> _Quad:  # pragma: no cover
        raise NotImplementedError

    def _unmix(self, p: Tensor, q: Tensor, r: Tensor, s: Tensor) -> _Quad:  # pragma: no cover
        raise NotImplementedError

    def _block_logdet(self) -> float:
        return 0.0

    def _logdet(self, x: Tensor, pixels: int) -> Tensor:
        return self._zeros(x) + (pixels // 4) * self._block_logdet()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        a, b, c, d = self._blocks(x)
        z = torch.cat(self._mix(a, b, c, d), dim=1)
        return z, self._logdet(x, x[0].numel())

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        x = self._unblock(*self._unmix(*self._coefficients(z)))
        return x, -self._logdet(z, z[0].numel())


class NNDownsample(_BlockDownsample):
    """Keep the top-left pixel ``a`` of each 2x2 block plus the residuals of its
    nearest-neighbour upsampling: ``[a, b - a, c - a, d - a]``. Unit triangular, log-det 0.
    """

    def _mix(self, a: Tensor, b: Tensor, c: Tensor, d: Tensor) -> _Quad:
        return a, b - a, c - a, d - a

    def _unmix(self, a: Tensor, rb: Tensor, rc: Tensor, rd: Tensor) -> _Quad:
        return a, rb + a, rc + a, rd + a


class InvertibleAvgPool2d(_BlockDownsample):
    """The 2x2 mean ``m`` plus three residuals ``[m, b - m, c - m, d - m]``.

    The fourth residual ``a - m`` is minus the sum of the others. Each block's map has
    determinant 1/4, so the log-det is ``(C H W / 4) log(1/4)`` per sample.
    """

    def _mix(self, a: Tensor, b: Tensor, c: Tensor, d: Tensor) -> _Quad:
        m = (a + b + c + d) / 4
        return m, b - m, c - m, d - m

    def _unmix(self, m: Tensor, rb: Tensor, rc: Tensor, rd: Tensor) -> _Quad:
        return m - (rb + rc + rd), rb + m, rc + m, rd + m

    def _block_logdet(self) -> float:
        return math.log(0.25)


class HaarDownsample(_BlockDownsample):
    """One orthonormal 2-D Haar wavelet step: ``[LL, LH, HL, HH]``, log-det 0.

    ``LL = (a+b+c+d)/2`` (low-pass), ``LH = (a-b+c-d)/2`` (horizontal detail),
    ``HL = (a+b-c-d)/2`` (vertical detail), ``HH = (a-b-c+d)/2`` (diagonal detail).
    The map is its own transpose and an orthogonal involution.
    """

    @staticmethod
    def _haar(a: Tensor, b: Tensor, c: Tensor, d: Tensor) -> _Quad:
        s, t = a + b, a - b
        u, v = c + d, c - d
        return (s + u) / 2, (t + v) / 2, (s - u) / 2, (t - v) / 2

    def _mix(self, a: Tensor, b: Tensor, c: Tensor, d: Tensor) -> _Quad:
        return self._haar(a, b, c, d)

    def _unmix(self, ll: Tensor, lh: Tensor, hl: Tensor, hh: Tensor) -> _Quad:
        # The Haar matrix is symmetric and orthogonal, hence its own inverse.
        return self._haar(ll, lh, hl, hh)
