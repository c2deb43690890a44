"""Masked autoregressive flows: MADE conditioner and the MAF layer (IAF by inversion).

``MaskedAutoregressive`` maps data to latent in one pass (``z_i = x_i exp(s_i) + t_i`` with
``(t_i, s_i)`` functions of ``x_{<i}``), which makes density evaluation cheap and sampling
sequential (D passes). ``Inverse(MaskedAutoregressive(...))`` is an inverse autoregressive
flow (IAF): one-pass sampling, sequential density.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import Bijection, sum_except_batch
from ._functional import soft_clamp

__all__ = ["MADE", "MaskedAutoregressive", "MaskedLinear"]


class MaskedLinear(nn.Linear):
    """``nn.Linear`` whose weight is multiplied by a fixed 0/1 ``mask`` (out, in)."""

    mask: Tensor

    def __init__(self, in_features: int, out_features: int, mask: Tensor) -> None:
        super().__init__(in_features, out_features)
        if tuple(mask.shape) != (out_features, in_features):
            raise ValueError(
                f"MaskedLinear: mask shape {tuple(mask.shape)} != {(out_features, in_features)}"
            )
        self.register_buffer("mask", mask.to(torch.bool))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask.to(self.weight.dtype), self.bias)


class MADE(nn.Module):
    """Masked autoencoder (Germain et al. 2015) as an autoregressive conditioner.

    ``(B, features) -> (B, params, features)``: output ``[:, k, i]`` depends only on inputs
    ``x_j`` that come before ``i`` in ``order`` (default ``0, 1, ..., D-1``). Hidden
    degrees are assigned cyclically (deterministic, so rebuilt modules match saved ones).
    The output layer is zero-initialised. Not a bijection.
    """

    order_rank: Tensor

    def __init__(
        self,
        features: int,
        params: int = 2,
        hidden: int = 64,
        layers: int = 2,
        order: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if features < 2:
            raise ValueError(
                f"MADE: features must be >= 2 (a 1-D autoregressive map has no inputs), "
                f"got {features}"
            )
        if params < 1 or hidden < 1 or layers < 1:
            raise ValueError(
                f"MADE: params, hidden and layers must be >= 1, got {params}, {hidden}, {layers}"
            )
        if hidden < features - 1:
            raise ValueError(
                f"MADE: hidden={hidden} < features-1={features - 1} would cut some outputs "
                "off from their inputs"
            )
        self.features, self.params = features, params
        if order is None:
            rank = torch.arange(features)
        else:
            if sorted(order) != list(range(features)):
                raise ValueError(f"MADE: order must be a permutation of 0..{features - 1}")
            rank = torch.empty(features, dtype=torch.long)
            rank[torch.tensor(list(order))] = torch.arange(features)
        # Degrees: input i has degree rank[i]; a hidden unit of degree d sees inputs of
        # degree <= d; output i sees hidden units of degree < rank[i].
        self.register_buffer("order_rank", rank)
        in_deg = rank
        mods: list[nn.Module] = []
        width_deg = in_deg
        for _ in range(layers):
            h_deg = torch.arange(hidden) % (features - 1)
            mods += [
                MaskedLinear(len(width_deg), hidden, h_deg[:, None] >= width_deg[None, :]),
                nn.ReLU(),
            ]
            width_deg = h_deg
        out_deg = in_deg.repeat(params)
        last = MaskedLinear(
            len(width_deg), params * features, out_deg[:, None] > width_deg[None, :]
        )
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        mods.append(last)
        self.net = nn.Sequential(*mods)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).reshape(x.shape[0], self.params, self.features)


class MaskedAutoregressive(Bijection):
    """Affine MAF layer on vectors ``(B, features)``.

    Forward (data -> latent, one pass): ``z_i = x_i * exp(s_i) + t_i`` with
    ``(t, raw) = MADE(x)`` and ``s = clamp * tanh(raw / clamp)``; log-det ``sum_i s_i``.
    Inverse: ``features`` sequential MADE passes. Identity at init. Use
    ``Inverse(MaskedAutoregressive(...))`` for an IAF.
    """

    def __init__(
        self,
        features: int,
        hidden: int = 64,
        layers: int = 2,
        clamp: float | None = 3.0,
        order: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if clamp is not None and not clamp > 0:
            raise ValueError(f"MaskedAutoregressive: clamp must be > 0 or None, got {clamp}")
        self.features = int(features)
        self.clamp = None if clamp is None else float(clamp)
        self.made = MADE(features, params=2, hidden=hidden, layers=layers, order=order)

    def _shift_log_scale(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.made(x)
        shift, raw = h[:, 0], h[:, 1]
        if self.clamp is None:
            return shift, raw
        return shift, soft_clamp(raw, self.clamp)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x, [("B", self.features)])
        shift, s = self._shift_log_scale(x)
        return x * torch.exp(s) + shift, sum_except_batch(s)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._check(z, [("B", self.features)])
        x = torch.zeros_like(z)
        # After pass k every entry of order rank < k is exact, so D passes suffice; the
        # last pass's parameters only depend on the first D-1 ranks, hence are exact too.
        for _ in range(self.features):
            shift, s = self._shift_log_scale(x)
            x = (z - shift) * torch.exp(-s)
        return x, -sum_except_batch(s)

    def extra_repr(self) -> str:
        return f"features={self.features}, clamp={self.clamp}"
