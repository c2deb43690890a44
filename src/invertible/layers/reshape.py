"""Shape bijections: squeeze (space-to-depth), reshape/flatten, multi-scale factor-out.

All are volume preserving (log-det 0) except what ``FactorOut`` wraps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..core import Bijection, InvalidInputError, apply_layer

__all__ = ["FactorOut", "Flatten", "Reshape", "Squeeze"]

# Sub-pixel order of a 2x2 block, (row, col). The diagonal pair comes first, so that the
# first half of the squeezed channels is one colour of a checkerboard and the second half
# the other: a channel split after a squeeze is a checkerboard split before it.
_CHECKERBOARD = ((0, 0), (1, 1), (0, 1), (1, 0))


class Squeeze(Bijection):
    """2x2 space-to-depth: ``(B, C, H, W) -> (B, 4C, H/2, W/2)``, H and W even.

    Output channel ``k * C + c`` holds channel ``c`` at sub-pixel ``k`` of each 2x2 block,
    with sub-pixels in checkerboard order ``(0,0), (1,1), (0,1), (1,0)``. Log-det 0.
    """

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x, [("B", "C", "H", "W")])
        _, _, h, w = x.shape
        if h % 2 or w % 2:
            raise InvalidInputError(
                f"Squeeze: height and width must be even, got {h}x{w}"
            )
        parts = [x[:, :, i::2, j::2] for i, j in _CHECKERBOARD]
        return torch.cat(parts, dim=1), self._zeros(x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._check(z, [("B", "C", "H", "W")])
        b, c4, h, w = z.shape
        if c4 % 4:
            raise InvalidInputError(
                f"Squeeze: inverse needs a channel count divisible by 4, got {c4}"
            )
        c = c4 // 4
        x = z.new_empty(b, c, 2 * h, 2 * w)
        for k, (i, j) in enumerate(_CHECKERBOARD):
            x[:, :, i::2, j::2] = z[:, k * c : (k + 1) * c]
        return x, self._zeros(z)


class Reshape(Bijection):
    """``(B, *in_shape) -> (B, *out_shape)`` in row-major order; log-det 0."""

    def __init__(self, in_shape: Sequence[int], out_shape: Sequence[int]) -> None:
        super().__init__()
        self.in_shape = tuple(in_shape)
        self.out_shape = tuple(out_shape)
        if math.prod(self.in_shape) != math.prod(self.out_shape):
            raise ValueError(
                f"{type(self).__name__}: shapes {self.in_shape} and {self.out_shape} "
                "hold different numbers of elements"
            )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x, [("B", *self.in_shape)])
        return x.reshape(x.shape[0], *self.out_shape), self._zeros(x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._check(z, [("B", *self.out_shape)])
        return z.reshape(z.shape[0], *self.in_shape), self._zeros(z)

    def extra_repr(self) -> str:
        return f"{self.in_shape} -> {self.out_shape}"


class Flatten(Reshape):
    """``(B, *shape) -> (B, prod(shape))``; log-det 0."""

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__(shape, (math.prod(shape),))


class FactorOut(Bijection):
    """Multi-scale factor-out: transform the first ``keep`` channels, pass the rest on.

    ``(B, C, ...) -> (B, C, ...)``: channels ``[:keep]`` go through ``inner`` (which must
    preserve their shape), channels ``[keep:]`` are latent from here on and leave unchanged.
    Nesting ``Squeeze -> steps -> FactorOut(keep, next level) -> Inverse(Squeeze)`` gives the
    RealNVP/Glow multi-scale architecture with latents laid out like the input, so the base
    is a plain factorised density of the input's shape.
    """

    def __init__(self, keep: int, inner: Bijection) -> None:
        super().__init__()
        if keep < 1:
            raise ValueError(f"FactorOut: keep must be >= 1, got {keep}")
        self.keep = int(keep)
        self.inner = inner

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x, [("B", "C", "...")])
        if x.shape[1] <= self.keep:
            raise InvalidInputError(
                f"FactorOut: input has {x.shape[1]} channels, need more than keep={self.keep}"
            )
        return x[:, : self.keep], x[:, self.keep :]

    @property
    def takes_context(self) -> bool:  # type: ignore[override]
        return self.inner.takes_context

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        kept, out = self._split(x)
        z, ld = apply_layer(self.inner, kept, context)
        return torch.cat([z, out], dim=1), ld

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        kept, out = self._split(z)
        x, ld = apply_layer(self.inner, kept, context, inverse=True)
        return torch.cat([x, out], dim=1), ld

    def extra_repr(self) -> str:
        return f"keep={self.keep}"
