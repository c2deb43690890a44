"""Base distributions and ``Flow``: a base distribution pushed through a bijection."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .core import Bijection, InvalidInputError, describe_shape, sum_except_batch

__all__ = [
    "DiagonalGaussian",
    "Distribution",
    "Flow",
    "StandardLogistic",
    "StandardNormal",
]

_LOG_2PI = math.log(2 * math.pi)


class Distribution(nn.Module):
    """A factorised density over events of shape ``event_shape``.

    ``log_prob(z)`` takes ``(B, *event_shape)`` and returns ``(B,)``;
    ``sample(n)`` returns ``(n, *event_shape)``.
    """

    def __init__(self, event_shape: Sequence[int]) -> None:
        super().__init__()
        self.event_shape = torch.Size(event_shape)
        # Tracks the module's device and dtype for sampling, and follows `.to()`.
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    def _check_event(self, z: Tensor) -> None:
        if tuple(z.shape[1:]) != tuple(self.event_shape):
            raise InvalidInputError(
                f"{type(self).__name__}: expected shape "
                f"{describe_shape(('B', *self.event_shape))}, "
                f"got {describe_shape(tuple(z.shape))}"
            )

    def log_prob(self, z: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample(self, n: int, temperature: float = 1.0) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def _noise_shape(self, n: int) -> tuple[int, ...]:
        if n < 1:
            raise InvalidInputError(f"{type(self).__name__}: cannot draw {n} samples")
        return (n, *self.event_shape)


class StandardNormal(Distribution):
    """N(0, I) over ``event_shape``; ``temperature`` scales the standard deviation."""

    def log_prob(self, z: Tensor) -> Tensor:
        self._check_event(z)
        return -0.5 * sum_except_batch(z**2) - 0.5 * self.event_shape.numel() * _LOG_2PI

    def sample(self, n: int, temperature: float = 1.0) -> Tensor:
        a = self._anchor
        return temperature * torch.randn(self._noise_shape(n), device=a.device, dtype=a.dtype)


class DiagonalGaussian(Distribution):
    """N(mu, diag(exp(2 log_sigma))) with learned ``loc`` and ``log_scale`` per dimension."""

    def __init__(self, event_shape: Sequence[int]) -> None:
        super().__init__(event_shape)
        self.loc = nn.Parameter(torch.zeros(self.event_shape))
        self.log_scale = nn.Parameter(torch.zeros(self.event_shape))

    def log_prob(self, z: Tensor) -> Tensor:
        self._check_event(z)
        u = (z - self.loc) * torch.exp(-self.log_scale)
        return (
            -0.5 * sum_except_batch(u**2)
            - self.log_scale.sum()
            - 0.5 * self.event_shape.numel() * _LOG_2PI
        )

    def sample(self, n: int, temperature: float = 1.0) -> Tensor:
        eps = torch.randn(self._noise_shape(n), device=self.loc.device, dtype=self.loc.dtype)
        return self.loc + temperature * torch.exp(self.log_scale) * eps


class StandardLogistic(Distribution):
    """Logistic(0, 1) per dimension (NICE's prior); ``temperature`` scales the samples."""

    def log_prob(self, z: Tensor) -> Tensor:
        self._check_event(z)
        # log p(z) = -z - 2 softplus(-z), written to stay finite for large |z|.
        return sum_except_batch(-F.softplus(-z) - F.softplus(z))

    def sample(self, n: int, temperature: float = 1.0) -> Tensor:
        a = self._anchor
        u = torch.rand(self._noise_shape(n), device=a.device, dtype=a.dtype)
        tiny = torch.finfo(a.dtype).tiny
        u = u.clamp(tiny, 1 - torch.finfo(a.dtype).eps)
        return temperature * (torch.log(u) - torch.log1p(-u))


class Flow(nn.Module):
    """A normalizing flow: ``x = bijection.inverse(z)``, ``z ~ base``.

    ``bijection`` maps data ``x`` (shape ``(B, *event_shape)``) to latent ``z`` of the
    base's shape. ``log_prob(x) = base.log_prob(z) + log|det dz/dx|``.
    """

    def __init__(self, bijection: Bijection, base: Distribution) -> None:
        super().__init__()
        if not isinstance(bijection, Bijection):
            raise TypeError(f"Flow takes a Bijection, got {type(bijection).__name__}")
        if not isinstance(base, Distribution):
            raise TypeError(f"Flow takes a Distribution base, got {type(base).__name__}")
        self.bijection = bijection
        self.base = base

    @staticmethod
    def _check_finite(x: Tensor, what: str) -> None:
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise InvalidInputError(f"Flow: {what} must be a floating-point tensor")
        if not torch.isfinite(x).all():
            bad = (~torch.isfinite(x)).sum().item()
            raise InvalidInputError(f"Flow: {what} has {bad} non-finite values (nan or inf)")

    def forward(self, x: Tensor) -> Tensor:
        """Alias of ``log_prob`` so that wrappers such as DDP see the training objective."""
        return self.log_prob(x)

    def log_prob(self, x: Tensor) -> Tensor:
        """``(B, *shape) -> (B,)``: log-density of data ``x`` in nats."""
        self._check_finite(x, "input")
        z, logabsdet = self.bijection(x)
        return self.base.log_prob(z) + logabsdet

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> Tensor:
        """Draw ``n`` samples ``(n, *shape)``; ``temperature < 1`` gives sharper samples."""
        z = self.base.sample(n, temperature)
        x, _ = self.bijection.inverse(z)
        return x

    def sample_and_log_prob(self, n: int) -> tuple[Tensor, Tensor]:
        """Draw ``n`` samples and their log-densities in one pass (no forward re-run)."""
        z = self.base.sample(n)
        log_pz = self.base.log_prob(z)
        x, inv_logabsdet = self.bijection.inverse(z)
        return x, log_pz - inv_logabsdet

    def bits_per_dim(self, x: Tensor, n_bins: int = 256) -> Tensor:
        """``(B, *shape) -> (B,)``: bits per dimension of discrete data.

        ``x`` is dequantized data scaled to [0, 1], i.e. ``(k + u) / n_bins`` for integer
        levels ``k`` and noise ``u`` in [0, 1). Any preprocessing bijection (logit, scaling)
        inside ``self.bijection`` is counted by ``log_prob``; the ``n_bins`` term accounts for
        the scaling of the integer grid to [0, 1].
        """
        if n_bins < 2:
            raise InvalidInputError(f"Flow.bits_per_dim: n_bins must be >= 2, got {n_bins}")
        dims = x[0].numel()
        log_p = self.log_prob(x) - dims * math.log(n_bins)
        return -log_p / (dims * math.log(2.0))
