"""Masked autoregressive flows: MADE conditioner, the affine MAF layer (IAF by inversion)
and its neural-spline counterpart.

``MaskedAutoregressive`` maps data to latent in one pass (``z_i = x_i exp(s_i) + t_i`` with
``(t_i, s_i)`` functions of ``x_{<i}``), which makes density evaluation cheap and sampling
sequential (D passes). ``Inverse(MaskedAutoregressive(...))`` is an inverse autoregressive
flow (IAF): one-pass sampling, sequential density.

With ``context_features=K > 0`` a layer is conditional (``forward(x, context=c)``, ``c`` of
shape ``(B, K)``): the context enters MADE's first hidden layer through an unmasked linear
map, so every output may depend on it without breaking the autoregressive order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import Bijection, check_context, check_context_features, sum_except_batch
from ._functional import soft_clamp
from .splines import check_spline_options, rational_quadratic_spline, spline_params

__all__ = ["MADE", "MaskedAutoregressive", "MaskedLinear", "MaskedSplineAutoregressive"]


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
    ``x_j`` that come before ``i`` in ``order`` (default ``0, 1, ..., D-1``), and on the
    ``(B, context_features)`` context if there is one. Hidden degrees are assigned
    cyclically (deterministic, so rebuilt modules match saved ones). The output layer is
    zero-initialised. Not a bijection.
    """

    order_rank: Tensor

    def __init__(
        self,
        features: int,
        params: int = 2,
        hidden: int = 64,
        layers: int = 2,
        order: Sequence[int] | None = None,
        context_features: int = 0,
    ) -> None:
        super().__init__()
        check_context_features("MADE", context_features)
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
        self.context_features = context_features
        self.context_net = nn.Linear(context_features, hidden) if context_features else None

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        if self.context_net is None:
            h = self.net(x)
        else:
            assert context is not None  # the layer using MADE validates it
            h = self.net[1:](self.net[0](x) + self.context_net(context))
        return h.reshape(x.shape[0], self.params, self.features)


class _Autoregressive(Bijection):
    """A MADE-conditioned element-wise map on ``(B, features)``; subclasses define the map.

    Forward (data -> latent) is one MADE pass; the inverse is ``features`` sequential
    passes: after pass k every entry of order rank < k is exact, so D passes suffice (the
    last pass's parameters depend on the first D-1 ranks only, hence are exact too).
    ``params_per_entry`` is how many MADE outputs each entry's map takes.
    """

    params_per_entry: int

    def __init__(
        self,
        features: int,
        hidden: int,
        layers: int,
        order: Sequence[int] | None,
        context_features: int = 0,
    ) -> None:
        super().__init__()
        self.features = int(features)
        self.made = MADE(
            features, params=self.params_per_entry, hidden=hidden, layers=layers, order=order,
            context_features=context_features,
        )
        self.context_features = context_features
        self.takes_context = context_features > 0

    def _context(self, context: Tensor | None, x: Tensor) -> Tensor | None:
        return check_context(self, context, x, self.context_features) if (
            self.takes_context) else None

    # Element-wise map of x given MADE's output h (B, params, features); log-det per entry.
    def _map(self, x: Tensor, h: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Data -> latent in one pass, ``(B, features)`` -> same shape, log-det ``(B,)``."""
        self._check(x, [("B", self.features)])
        c = self._context(context, x)
        z, ld = self._map(x, self.made(x, c), inverse=False)
        return z, sum_except_batch(ld)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Latent -> data in ``features`` sequential passes; log-det = minus the forward one."""
        self._check(z, [("B", self.features)])
        c = self._context(context, z)
        x = torch.zeros_like(z)
        ld = torch.zeros_like(z)
        for _ in range(self.features):
            x, ld = self._map(z, self.made(x, c), inverse=True)
        return x, sum_except_batch(ld)


class MaskedAutoregressive(_Autoregressive):
    """Affine MAF layer on vectors ``(B, features)``.

    Forward (data -> latent, one pass): ``z_i = x_i * exp(s_i) + t_i`` with
    ``(t, raw) = MADE(x)`` and ``s = clamp * tanh(raw / clamp)``; log-det ``sum_i s_i``.
    Inverse: ``features`` sequential MADE passes. Identity at init. Use
    ``Inverse(MaskedAutoregressive(...))`` for an IAF.
    """

    params_per_entry = 2

    def __init__(
        self,
        features: int,
        hidden: int = 64,
        layers: int = 2,
        clamp: float | None = 3.0,
        order: Sequence[int] | None = None,
        context_features: int = 0,
    ) -> None:
        if clamp is not None and not clamp > 0:
            raise ValueError(f"MaskedAutoregressive: clamp must be > 0 or None, got {clamp}")
        super().__init__(features, hidden, layers, order, context_features)
        self.clamp = None if clamp is None else float(clamp)

    def _map(self, x: Tensor, h: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        shift, s = h[:, 0], h[:, 1]
        if self.clamp is not None:
            s = soft_clamp(s, self.clamp)
        if inverse:
            return (x - shift) * torch.exp(-s), -s
        return x * torch.exp(s) + shift, s

    def extra_repr(self) -> str:
        return f"features={self.features}, clamp={self.clamp}"


class MaskedSplineAutoregressive(_Autoregressive):
    """Autoregressive neural spline flow layer (NSF-AR) on vectors ``(B, features)``.

    Forward (data -> latent, one pass): ``z_i = RQS(x_i; theta_i(x_{<i}))``, a monotonic
    rational-quadratic spline of ``bins`` bins on ``[-tail_bound, tail_bound]`` (identity
    outside) whose ``3 * bins - 1`` parameters come from a MADE. Inverse: ``features``
    sequential passes, each a closed-form spline root. Identity at init.
    """

    def __init__(
        self,
        features: int,
        bins: int = 8,
        tail_bound: float = 3.0,
        hidden: int = 64,
        layers: int = 2,
        order: Sequence[int] | None = None,
        context_features: int = 0,
    ) -> None:
        check_spline_options("MaskedSplineAutoregressive", bins, tail_bound)
        # Per instance, set before the base builds the MADE with this many outputs.
        self.params_per_entry = spline_params(bins)
        super().__init__(features, hidden, layers, order, context_features)
        self.bins, self.tail_bound = bins, float(tail_bound)

    def _map(self, x: Tensor, h: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        return rational_quadratic_spline(
            x, h.transpose(1, 2), inverse=inverse, tail_bound=self.tail_bound
        )

    def extra_repr(self) -> str:
        return f"features={self.features}, bins={self.bins}, tail_bound={self.tail_bound}"
