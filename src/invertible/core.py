"""The bijection contract and its composition.

Every layer maps data to latent. ``forward(x) -> (z, logabsdet)`` with
``logabsdet = log|det dz/dx|`` of shape ``(batch,)``; ``inverse(z) -> (x, logabsdet)``
returns the inverse's own log-det, which is minus the forward one at the matching point.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import cast

import torch
from torch import Tensor, nn

__all__ = [
    "Bijection",
    "InvalidInputError",
    "Inverse",
    "Sequential",
    "describe_shape",
    "sum_except_batch",
]


class InvalidInputError(ValueError):
    """Raised when a layer is given input it cannot handle (shape, dtype, values)."""


def describe_shape(shape: Sequence[int | str]) -> str:
    """Format a shape like ``(B, 3, H, W)`` for error messages."""
    return "(" + ", ".join(str(s) for s in shape) + ")"


class Bijection(nn.Module):
    """An invertible map with a tractable log-determinant.

    Subclasses implement ``forward`` (data -> latent) and ``inverse`` (latent -> data).
    Both return ``(output, logabsdet)`` with ``logabsdet`` of shape ``(batch,)``.
    """

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- validation helpers shared by all layers -------------------------------------------
    def _check(
        self,
        x: Tensor,
        expected: Sequence[Sequence[int | str]],
    ) -> None:
        """Check ``x`` against one of several expected shapes.

        ``expected`` lists shapes such as ``[("B", 4), ("B", 4, "H", "W")]``: an int entry
        must match exactly, a string entry is free, and a trailing ``"..."`` admits any
        further dimensions. The first entry is always the batch.
        """
        name = type(self).__name__
        if not isinstance(x, Tensor):
            raise InvalidInputError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise InvalidInputError(
                f"{name}: expected a floating-point tensor, got dtype {x.dtype}"
            )
        for shape in expected:
            fixed = shape[:-1] if shape and shape[-1] == "..." else shape
            rank_ok = x.dim() >= len(fixed) if len(fixed) < len(shape) else x.dim() == len(shape)
            if rank_ok and all(
                isinstance(s, str) or x.shape[i] == s for i, s in enumerate(fixed)
            ):
                return
        wanted = " or ".join(describe_shape(s) for s in expected)
        raise InvalidInputError(
            f"{name}: expected input of shape {wanted}, got {describe_shape(tuple(x.shape))}"
        )

    @staticmethod
    def _zeros(x: Tensor) -> Tensor:
        """A zero log-det of shape ``(batch,)`` matching ``x``'s dtype and device."""
        return x.new_zeros(x.shape[0])


class Sequential(Bijection):
    """Composition ``b_n o ... o b_1``: forward runs in order, inverse in reverse order.

    The log-dets of the parts are summed.
    """

    def __init__(self, *bijections: Bijection | Iterable[Bijection]) -> None:
        super().__init__()
        flat: list[Bijection] = []
        for b in bijections:
            if isinstance(b, Bijection):
                flat.append(b)
            else:
                flat.extend(b)
        for b in flat:
            if not isinstance(b, Bijection):
                raise TypeError(f"Sequential takes Bijections, got {type(b).__name__}")
        self.layers = nn.ModuleList(flat)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i: int) -> Bijection:
        # `layers` only ever holds Bijections (checked in __init__); ModuleList types as Module.
        return cast(Bijection, self.layers[i])

    def __iter__(self) -> Iterator[Bijection]:
        return cast("Iterator[Bijection]", iter(self.layers))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        total = self._zeros(x)
        for layer in self.layers:
            x, ld = layer(x)
            total = total + ld
        return x, total

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        total = self._zeros(z)
        for layer in cast("Iterable[Bijection]", reversed(self.layers)):
            z, ld = layer.inverse(z)
            total = total + ld
        return z, total


class Inverse(Bijection):
    """Swap the two directions of a bijection (e.g. a MAF becomes an IAF)."""

    def __init__(self, bijection: Bijection) -> None:
        super().__init__()
        if not isinstance(bijection, Bijection):
            raise TypeError(f"Inverse takes a Bijection, got {type(bijection).__name__}")
        self.bijection = bijection

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.bijection.inverse(x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.bijection(z)


def sum_except_batch(t: Tensor) -> Tensor:
    """Sum all dimensions but the first: ``(B, ...) -> (B,)``.

    Half-precision terms (bfloat16 autocast) are summed in float32: a log-det or log-density
    is a sum over thousands of dimensions, which bfloat16's 8-bit mantissa cannot hold.
    """
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.float()
    return t.reshape(t.shape[0], -1).sum(dim=1)

