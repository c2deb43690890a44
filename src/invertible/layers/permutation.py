"""Channel mixing between coupling layers: fixed permutations and the Glow 1x1 convolution.

All act on dimension 1 (features of ``(B, D)``, channels of ``(B, C, H, W)`` or of any
``(B, C, ...)``), identically at every spatial position.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import Bijection

__all__ = ["InvertibleConv1x1", "Permute", "Reverse"]


def _spatial_size(x: Tensor) -> int:
    """Number of positions that share one channel map: ``H * W`` for images, 1 for vectors."""
    return math.prod(x.shape[2:])


class Reverse(Bijection):
    """Reverse the order of dimension 1: ``(B, C, ...) -> (B, C, ...)``; log-det 0.

    The RealNVP/Glow "reverse" permutation: the halves of a channel split swap roles.
    """

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x, [("B", "C", "...")])
        return x.flip(1), self._zeros(x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._check(z, [("B", "C", "...")])
        return z.flip(1), self._zeros(z)


class Permute(Bijection):
    """A fixed random permutation of dimension 1: ``(B, features, ...)``; log-det 0.

    ``seed`` makes the permutation reproducible without touching the global RNG; without
    it the global torch RNG is used. The permutation is a buffer, so it is saved in and
    restored from the ``state_dict``.
    """

    perm: Tensor
    inv_perm: Tensor

    def __init__(self, features: int, seed: int | None = None) -> None:
        super().__init__()
        if features < 1:
            raise ValueError(f"Permute: features must be >= 1, got {features}")
        self.features = int(features)
        gen = None
        if seed is not None:
            gen = torch.Generator().manual_seed(int(seed))
        perm = torch.randperm(self.features, generator=gen)
        self.register_buffer("perm", perm)
        self.register_buffer("inv_perm", torch.argsort(perm))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x, [("B", self.features, "...")])
        return x.index_select(1, self.perm), self._zeros(x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._check(z, [("B", self.features, "...")])
        return z.index_select(1, self.inv_perm), self._zeros(z)

    def extra_repr(self) -> str:
        return f"features={self.features}"


class InvertibleConv1x1(Bijection):
    """Glow's invertible 1x1 convolution with the LU parametrisation.

    ``z[:, :, h, w] = W @ x[:, :, h, w]`` with ``W = P L (U + diag(sign * exp(log_s)))``:
    ``P`` a fixed permutation, ``L`` unit lower triangular, ``U`` strictly upper triangular,
    ``sign`` a fixed buffer of +-1 and ``log_s`` learned. Initialised from a random
    orthogonal matrix. Log-det ``= H * W * sum(log_s)`` (``H * W`` = 1 for vectors).

    Input ``(B, C, H, W)``, ``(B, C)`` (a learned invertible linear map) or any
    ``(B, C, ...)``. The inverse applies ``W^-1`` obtained by triangular solves, so it costs
    the same as the forward pass.
    """

    p: Tensor
    sign_s: Tensor
    lower_mask: Tensor

    def __init__(self, channels: int) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"InvertibleConv1x1: channels must be >= 1, got {channels}")
        self.channels = int(channels)
        q, _ = torch.linalg.qr(torch.randn(channels, channels, dtype=torch.float64))
        self._set_from_matrix(q)

    @classmethod
    def from_matrix(cls, weight: Tensor) -> InvertibleConv1x1:
        """A layer whose forward map is ``z = weight @ x``; ``weight`` must be invertible.

        The parameters take ``weight``'s floating dtype (the default dtype otherwise).
        """
        if weight.dim() != 2 or weight.shape[0] != weight.shape[1]:
            raise ValueError(
                f"InvertibleConv1x1.from_matrix: need a square matrix, got {tuple(weight.shape)}"
            )
        layer = cls(weight.shape[0])
        dtype = weight.dtype if weight.is_floating_point() else torch.get_default_dtype()
        layer._set_from_matrix(weight.detach().to(torch.float64).cpu(), dtype)
        return layer

    def _set_from_matrix(self, w: Tensor, dtype: torch.dtype | None = None) -> None:
        p, lower, upper = torch.linalg.lu(w)
        diag = torch.diagonal(upper)
        if bool((diag == 0).any()):
            raise ValueError("InvertibleConv1x1: the matrix is singular")
        c = self.channels
        dtype = dtype or torch.get_default_dtype()
        ones = torch.ones(c, c, dtype=torch.bool)
        # Parameters are full matrices masked to their triangle: simple, and the masked-out
        # entries never influence the map (their gradient is exactly zero).
        self.register_buffer("p", p.to(dtype))
        self.register_buffer("sign_s", torch.sign(diag).to(dtype))
        self.register_buffer("lower_mask", torch.tril(ones, -1), persistent=False)
        self.lower = nn.Parameter(torch.tril(lower, -1).to(dtype))
        self.upper = nn.Parameter(torch.triu(upper, 1).to(dtype))
        self.log_s = nn.Parameter(torch.log(diag.abs()).to(dtype))

    def _factors(self) -> tuple[Tensor, Tensor]:
        eye = torch.eye(self.channels, dtype=self.lower.dtype, device=self.lower.device)
        lower = self.lower * self.lower_mask + eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return lower, upper

    def weight(self) -> Tensor:
        """The ``(C, C)`` matrix ``W`` of the forward map."""
        lower, upper = self._factors()
        return self.p @ lower @ upper

    def inverse_weight(self) -> Tensor:
        """``W^-1 = U^-1 L^-1 P^T`` by two triangular solves (no general matrix inverse)."""
        lower, upper = self._factors()
        pt = self.p.T
        y = torch.linalg.solve_triangular(lower, pt, upper=False, unitriangular=True)
        return torch.linalg.solve_triangular(upper, y, upper=True)

    @staticmethod
    def _mix(w: Tensor, x: Tensor) -> Tensor:
        if x.dim() == 2:
            return x @ w.T
        if x.dim() == 4:
            return F.conv2d(x, w[:, :, None, None])
        return torch.einsum("ij,bj...->bi...", w, x)

    def _logdet(self, x: Tensor) -> Tensor:
        return (_spatial_size(x) * self.log_s.sum()).expand(x.shape[0])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x, [("B", self.channels, "...")])
        return self._mix(self.weight(), x), self._logdet(x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._check(z, [("B", self.channels, "...")])
        return self._mix(self.inverse_weight(), z), -self._logdet(z)

    def extra_repr(self) -> str:
        return f"channels={self.channels}"
