"""Dequantization: integer levels ``k`` -> continuous ``y = (k + u) / n_bins`` in [0, 1).

The dequantizers are not bijections: they draw noise ``u`` in [0, 1)^D from ``q(u | k)``
and return ``log q(u | k)``. For any flow density ``p`` on [0, 1]^D,

    log P(k) >= E_q[ log p(y) - D log n_bins - log q(u | k) ],

so ``flow.bits_per_dim(y, n_bins) + log_q / (D ln 2)`` is an unbiased estimate of an upper
bound on the bits per dimension of the discrete data (``bits_per_dim`` below computes it).
The usual image pipeline is ``levels -> dequantizer -> y -> Flow(Sequential(
LogitTransform(alpha) or Scale(1, -0.5), ...), base)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from ..core import InvalidInputError, describe_shape, sum_except_batch, value_checks_active
from ._functional import log_sigmoid_derivative, soft_clamp

if TYPE_CHECKING:
    from ..distributions import Flow

__all__ = ["UniformDequantization", "VariationalDequantization", "make_dequantizer"]

_LOG_2PI = math.log(2 * math.pi)
# Keeps the noise flow's log-scales bounded, so an early bad step cannot blow it up.
_NOISE_LOG_SCALE_BOUND = 3.0


class _Dequantization(nn.Module):
    """Shared validation and the bits-per-dim bound for both dequantizers."""

    _anchor: Tensor

    def __init__(self, n_bins: int) -> None:
        super().__init__()
        if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 2:
            raise ValueError(f"{type(self).__name__}: n_bins must be an int >= 2, got {n_bins}")
        self.n_bins = n_bins
        # Tracks the module's device and dtype for the noise, and follows `.to()`.
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    def _levels(self, k: Tensor, shape: Sequence[int] | None = None) -> Tensor:
        name = type(self).__name__
        if not isinstance(k, Tensor):
            raise InvalidInputError(f"{name}: expected a torch.Tensor, got {type(k).__name__}")
        if k.is_floating_point() or k.is_complex() or k.dtype == torch.bool:
            raise InvalidInputError(
                f"{name}: expected integer levels (uint8/int) in [0, {self.n_bins - 1}], got "
                f"dtype {k.dtype}; pass the raw levels, not data already scaled to [0, 1]"
            )
        if k.dim() < 1 or k.shape[0] < 1:
            raise InvalidInputError(
                f"{name}: expected a batch (B, ...), got shape {tuple(k.shape)}"
            )
        if shape is not None and tuple(k.shape[1:]) != tuple(shape):
            raise InvalidInputError(
                f"{name}: expected levels of shape {describe_shape(('B', *shape))}, "
                f"got {describe_shape(tuple(k.shape))}"
            )
        if value_checks_active():
            lo, hi = torch.stack(torch.aminmax(k)).tolist()  # one device sync, not two
            if lo < 0 or hi > self.n_bins - 1:
                raise InvalidInputError(
                    f"{name}: levels must lie in [0, {self.n_bins - 1}] for "
                    f"n_bins={self.n_bins}, got range [{lo}, {hi}]"
                )
        return k.to(device=self._anchor.device, dtype=self._anchor.dtype)

    def quantize(self, y: Tensor) -> Tensor:
        """Map continuous ``y`` (e.g. model samples) back to integer levels ``(B, ...)``."""
        return torch.floor(y * self.n_bins).clamp(0, self.n_bins - 1).to(torch.long)

    def bits_per_dim(
        self, flow: Flow, levels: Tensor, context: Tensor | None = None
    ) -> Tensor:
        """``(B,)`` one-sample estimate of the dequantization bound on bits/dim of ``levels``.

        ``flow`` is a ``Flow`` over ``y`` in [0, 1] (given ``context`` if it is conditional);
        the estimate is ``-(log p(y) - D log n_bins - log q(u | k)) / (D ln 2)``.
        """
        y, log_q = self(levels)
        dims = y[0].numel()
        return flow.bits_per_dim(y, self.n_bins, context) + log_q / (dims * math.log(2.0))

    def extra_repr(self) -> str:
        return f"n_bins={self.n_bins}"


class UniformDequantization(_Dequantization):
    """``k -> y = (k + u) / n_bins`` with ``u ~ U[0, 1)^D``; ``log q(u | k) = 0``.

    Call with integer levels ``(B, ...)`` in ``[0, n_bins - 1]`` (uint8 or int); returns
    ``(y, log_q)`` with ``y`` of the same shape in the module's dtype (``.to()`` it) and
    ``log_q`` of shape ``(B,)``, identically zero (the density of ``u`` on the unit cube).
    """

    def forward(self, levels: Tensor) -> tuple[Tensor, Tensor]:
        k = self._levels(levels)
        u = torch.rand_like(k)
        return (k + u) / self.n_bins, k.new_zeros(k.shape[0])


def _conditioner(shape: tuple[int, ...], in_groups: int, hidden: int, depth: int) -> nn.Module:
    """A net ``(B, in_groups * C, ...) -> (B, 2C, ...)``, zero-initialised output layer.

    Convolutional for image shapes ``(C, H, W)``, an MLP on flattened features otherwise.
    """
    if len(shape) == 3:
        c = shape[0]
        layers: list[nn.Module] = [nn.Conv2d(in_groups * c, hidden, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 1):
            layers += [nn.Conv2d(hidden, hidden, 1), nn.ReLU()]
        last: nn.Conv2d | nn.Linear = nn.Conv2d(hidden, 2 * c, 3, padding=1)
    else:
        d = math.prod(shape)
        layers = [nn.Linear(in_groups * d, hidden), nn.ReLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), nn.ReLU()]
        last = nn.Linear(hidden, 2 * d)
    nn.init.zeros_(last.weight)
    assert last.bias is not None  # both are built with bias=True; narrows Conv2d's Optional
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


class VariationalDequantization(_Dequantization):
    """Flow++ variational dequantization (Ho et al., 2019): a learned noise ``q(u | k)``.

    ``u = sigmoid(g(eps; k))`` with ``eps ~ N(0, I)`` and ``g`` a conditional flow: a
    ``k``-conditioned elementwise affine map followed by ``depth`` affine couplings with
    alternating checkerboard masks, each conditioned on ``k`` and on the other half of the
    noise. Conditioner nets are convolutional for image shapes ``(C, H, W)``, MLPs otherwise,
    with ``hidden`` units and zero-initialised outputs (at init ``u`` is logit-normal).

    Call with integer levels ``(B, *shape)`` in ``[0, n_bins - 1]``; returns ``(y, log_q)``
    with ``y = (k + u) / n_bins`` and ``log_q = log q(u | k)`` ``(B,)``, the density of ``u``
    (base density, flow log-det and sigmoid log-det). Train it jointly with the flow by
    minimising ``bits_per_dim(flow, levels)``. ``log_prob(u, levels)`` evaluates the density
    at a given ``u`` in (0, 1)^D.
    """

    masks: Tensor

    def __init__(self, shape: Sequence[int], n_bins: int, hidden: int = 32, depth: int = 2) -> None:
        super().__init__(n_bins)
        self.shape = tuple(int(s) for s in shape)
        if not self.shape or min(self.shape) < 1:
            raise ValueError(f"VariationalDequantization: bad event shape {self.shape}")
        if hidden < 1 or depth < 0:
            raise ValueError(
                f"VariationalDequantization: need hidden >= 1 and depth >= 0, "
                f"got hidden={hidden}, depth={depth}"
            )
        self.image = len(self.shape) == 3
        # The work shape: images stay (C, H, W), anything else is flattened to (D,).
        self._work = self.shape if self.image else (math.prod(self.shape),)
        self.affine = _conditioner(self.shape, 1, hidden, 2)
        self.couplings = nn.ModuleList(_conditioner(self.shape, 2, hidden, 2) for _ in range(depth))
        if self.image:
            _, h, w = self.shape
            parity = (torch.arange(h)[:, None] + torch.arange(w)[None, :]) % 2
            base = parity.expand(self.shape[0], h, w)
        else:
            base = torch.arange(self._work[0]) % 2
        masks = torch.stack([(base + i) % 2 for i in range(depth)]) if depth else base[None][:0]
        # masks[i] == 1 marks the noise entries that coupling i conditions on (kept as is).
        self.register_buffer("masks", masks.to(torch.get_default_dtype()), persistent=False)

    def _features(self, k: Tensor) -> Tensor:
        return (k / (self.n_bins - 1) - 0.5).reshape(k.shape[0], *self._work)

    def _flow(self, eps: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """``eps -> v`` and ``log|det dv/deps|`` ``(B,)`` given level features ``h``."""
        s, t = self.affine(h).chunk(2, dim=1)
        s = soft_clamp(s, _NOISE_LOG_SCALE_BOUND)
        v, ld = eps * torch.exp(s) + t, sum_except_batch(s)
        for mask, net in zip(self.masks, self.couplings, strict=True):
            s, t = net(torch.cat([h, v * mask], dim=1)).chunk(2, dim=1)
            s = soft_clamp(s, _NOISE_LOG_SCALE_BOUND) * (1 - mask)
            v = mask * v + (1 - mask) * (v * torch.exp(s) + t)
            ld = ld + sum_except_batch(s)
        return v, ld

    def _flow_inverse(self, v: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """``v -> eps`` and ``log|det dv/deps|`` at that ``eps`` (the forward log-det)."""
        ld = v.new_zeros(v.shape[0])
        for mask, net in zip(reversed(self.masks), reversed(self.couplings), strict=True):
            s, t = net(torch.cat([h, v * mask], dim=1)).chunk(2, dim=1)
            s = soft_clamp(s, _NOISE_LOG_SCALE_BOUND) * (1 - mask)
            v = mask * v + (1 - mask) * ((v - t) * torch.exp(-s))
            ld = ld + sum_except_batch(s)
        s, t = self.affine(h).chunk(2, dim=1)
        s = soft_clamp(s, _NOISE_LOG_SCALE_BOUND)
        return (v - t) * torch.exp(-s), ld + sum_except_batch(s)

    @staticmethod
    def _log_q(eps: Tensor, v: Tensor, flow_ld: Tensor) -> Tensor:
        log_base = -0.5 * sum_except_batch(eps**2) - 0.5 * eps[0].numel() * _LOG_2PI
        return log_base - flow_ld - sum_except_batch(log_sigmoid_derivative(v))

    def forward(self, levels: Tensor) -> tuple[Tensor, Tensor]:
        k = self._levels(levels, self.shape)
        h = self._features(k)
        eps = torch.randn_like(h)
        v, flow_ld = self._flow(eps, h)
        u = torch.sigmoid(v).reshape(k.shape)
        return (k + u) / self.n_bins, self._log_q(eps, v, flow_ld)

    def log_prob(self, u: Tensor, levels: Tensor) -> Tensor:
        """``log q(u | k)`` ``(B,)`` for noise ``u`` in (0, 1)^D, ``(B, *shape)``."""
        k = self._levels(levels, self.shape)
        if not isinstance(u, Tensor) or tuple(u.shape) != tuple(k.shape):
            raise InvalidInputError(
                f"VariationalDequantization: u must have the levels' shape {tuple(k.shape)}"
            )
        if not bool(((u > 0) & (u < 1)).all()):
            raise InvalidInputError("VariationalDequantization: u must lie in (0, 1)")
        h = self._features(k)
        u = u.to(h.dtype).reshape(h.shape)
        v = torch.log(u) - torch.log1p(-u)
        eps, flow_ld = self._flow_inverse(v, h)
        return self._log_q(eps, v, flow_ld)

    def extra_repr(self) -> str:
        return f"shape={self.shape}, n_bins={self.n_bins}, depth={len(self.couplings)}"


def make_dequantizer(kind: str, shape: Sequence[int],
                     n_bins: int) -> UniformDequantization | VariationalDequantization:
    """The dequantizer named ``kind`` ("uniform" or "variational") for levels ``(B, *shape)``."""
    if kind == "uniform":
        return UniformDequantization(n_bins)
    if kind == "variational":
        return VariationalDequantization(shape, n_bins)
    raise ValueError(f"unknown dequantization '{kind}' (use uniform or variational)")
