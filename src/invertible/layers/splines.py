"""Monotonic rational-quadratic splines (Durkan et al. 2019, "Neural Spline Flows").

``rational_quadratic_spline`` is the element-wise map: on ``[-B, B]`` a monotonic spline of
``K`` rational-quadratic bins through ``K + 1`` knots, outside it the identity (linear
tails, slope 1, so the map and its derivative are continuous at ``+-B``). The inverse is
the closed-form root of a quadratic, so it is exact to round-off, not iterative.

``RQSpline`` learns one spline per element (an unconditional layer). The conditioned layers
that build on the same function are ``SplineCoupling`` (``invertible.layers.coupling``) and
``MaskedSplineAutoregressive`` (``invertible.layers.autoregressive``).

Parameters come unnormalised, ``3K - 1`` per element in the last axis: ``K`` widths,
``K`` heights (each a softmax, floored at ``min_bin``), then ``K - 1`` interior
derivatives (a softplus, floored at ``min_derivative``). All-zero parameters give the
identity, so zero-initialised conditioners start at the identity map.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import Bijection, sum_except_batch

__all__ = ["RQSpline", "check_spline_options", "rational_quadratic_spline", "spline_params"]

MIN_BIN = 1e-3
MIN_DERIVATIVE = 1e-3
# softplus(0 + shift) + MIN_DERIVATIVE == 1: zero parameters give slope-1 knots.
_DERIVATIVE_SHIFT = math.log(math.expm1(1.0 - MIN_DERIVATIVE))


def spline_params(bins: int) -> int:
    """Unnormalised parameters per element: ``K`` widths, ``K`` heights, ``K - 1`` slopes."""
    return 3 * bins - 1


def check_spline_options(owner: str, bins: int, tail_bound: float) -> None:
    """``ValueError`` naming the problem for a bin count or tail bound no spline can use."""
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise ValueError(f"{owner}: bins must be an integer >= 2, got {bins!r}")
    if bins * MIN_BIN >= 1:
        raise ValueError(f"{owner}: bins must be < {int(1 / MIN_BIN)}, got {bins}")
    ok = isinstance(tail_bound, (int, float)) and not isinstance(tail_bound, bool)
    if not (ok and math.isfinite(tail_bound) and tail_bound > 0):
        raise ValueError(f"{owner}: tail_bound must be a finite number > 0, got {tail_bound!r}")


def _knots(raw: Tensor, bound: float) -> tuple[Tensor, Tensor]:
    """Bin sizes (floored at ``MIN_BIN`` of the range) and knot positions from ``-B`` to ``B``."""
    k = raw.shape[-1]
    frac = MIN_BIN + (1 - MIN_BIN * k) * torch.softmax(raw, dim=-1)
    knots = F.pad(torch.cumsum(frac, dim=-1), (1, 0)) * (2 * bound) - bound
    # Pin the ends so that the round-off of the cumulative sum cannot open a gap at +-B.
    knots = torch.cat([knots[..., :1].clamp(-bound, -bound), knots[..., 1:-1],
                       knots[..., -1:].clamp(bound, bound)], dim=-1)
    return knots[..., 1:] - knots[..., :-1], knots


def _gather(t: Tensor, idx: Tensor) -> Tensor:
    return t.gather(-1, idx).squeeze(-1)


def _into_unit(xi: Tensor) -> Tensor:
    """Round-off can put a bin coordinate a few ulps outside [0, 1]: clamp the value, but
    keep the formula's derivative, so that a point on a knot does not get slope 0."""
    return xi + (xi.clamp(0, 1) - xi).detach()


def rational_quadratic_spline(
    x: Tensor, params: Tensor, *, inverse: bool = False, tail_bound: float = 3.0
) -> tuple[Tensor, Tensor]:
    """Element-wise spline ``y = f(x)`` (or ``x = f^{-1}(y)`` with ``inverse=True``).

    ``x``: any shape ``S``; ``params``: ``(*S, 3K - 1)``. Returns the mapped tensor and the
    element-wise ``log |df/dx|`` (``-log |df/dx|`` at the root for the inverse), both
    shape ``S``. Outside ``[-tail_bound, tail_bound]`` the map is the identity (log-det 0).
    """
    bins = (params.shape[-1] + 1) // 3
    if params.shape[:-1] != x.shape or spline_params(bins) != params.shape[-1]:
        raise ValueError(
            f"rational_quadratic_spline: params of shape {tuple(params.shape)} do not fit "
            f"input {tuple(x.shape)} (need (*input, 3K - 1))"
        )
    bound = float(tail_bound)
    raw_w, raw_h, raw_d = params[..., :bins], params[..., bins : 2 * bins], params[..., 2 * bins :]
    widths, cum_w = _knots(raw_w, bound)
    heights, cum_h = _knots(raw_h, bound)
    interior = MIN_DERIVATIVE + F.softplus(raw_d + _DERIVATIVE_SHIFT)
    one = torch.ones_like(interior[..., :1])
    slopes = torch.cat([one, interior, one], dim=-1)  # slope 1 at +-B meets the linear tails

    inside = (x >= -bound) & (x <= bound)
    # Evaluate every element on a value clamped into range, so that no tail element feeds a
    # NaN or inf into the gradient of the branch torch.where discards.
    v = x.clamp(-bound, bound)
    knots = cum_h if inverse else cum_w
    idx = torch.searchsorted(knots[..., 1:-1].contiguous(), v[..., None].contiguous())
    x_k, w_k = _gather(cum_w, idx), _gather(widths, idx)
    y_k, h_k = _gather(cum_h, idx), _gather(heights, idx)
    d_k, d_k1 = _gather(slopes, idx), _gather(slopes, idx + 1)
    s_k = h_k / w_k
    curve = d_k + d_k1 - 2 * s_k

    if inverse:
        dy = v - y_k
        a = h_k * (s_k - d_k) + dy * curve
        b = h_k * d_k - dy * curve
        c = -s_k * dy
        disc = (b * b - 4 * a * c).clamp_min(0)
        # The root in [0, 1], written in the form that does not cancel when a -> 0.
        xi = _into_unit((2 * c) / (-b - torch.sqrt(disc)))
        out = x_k + xi * w_k
    else:
        xi = _into_unit((v - x_k) / w_k)
    t = xi * (1 - xi)
    denom = s_k + curve * t
    if not inverse:
        out = y_k + h_k * (s_k * xi * xi + d_k * t) / denom
    deriv = s_k * s_k * (d_k1 * xi * xi + 2 * s_k * t + d_k * (1 - xi) ** 2) / (denom * denom)
    logdet = torch.log(deriv)
    if inverse:
        logdet = -logdet
    return torch.where(inside, out, x), torch.where(inside, logdet, torch.zeros_like(logdet))


class RQSpline(Bijection):
    """One learned rational-quadratic spline per element of ``(B, *shape)``; same shape out.

    ``bins`` bins on ``[-tail_bound, tail_bound]``, identity outside. Data -> latent is the
    spline; the inverse is its closed-form root. Identity at initialisation.
    """

    def __init__(self, shape: int | Sequence[int], bins: int = 8, tail_bound: float = 3.0) -> None:
        super().__init__()
        check_spline_options("RQSpline", bins, tail_bound)
        self.shape = (shape,) if isinstance(shape, int) else tuple(shape)
        self.bins, self.tail_bound = bins, float(tail_bound)
        self.params = nn.Parameter(torch.zeros(*self.shape, spline_params(bins)))

    def _spline(self, x: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        self._check(x, [("B", *self.shape)])
        p = self.params.expand(x.shape[0], *self.params.shape)
        y, ld = rational_quadratic_spline(x, p, inverse=inverse, tail_bound=self.tail_bound)
        return y, sum_except_batch(ld)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Data -> latent, ``(B, *shape)`` -> same shape, log-det ``(B,)``."""
        return self._spline(x, inverse=False)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Latent -> data (closed-form root), log-det ``(B,)`` = minus the forward one."""
        return self._spline(z, inverse=True)

    def extra_repr(self) -> str:
        return f"shape={self.shape}, bins={self.bins}, tail_bound={self.tail_bound}"
