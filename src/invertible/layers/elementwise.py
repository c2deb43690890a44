"""Element-wise bijections: each output coordinate depends on one input coordinate.

All accept any shape ``(B, ...)``; the log-det is the sum of log-derivatives per sample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..core import Bijection, InvalidInputError, sum_except_batch, value_checks_active
from ._functional import log_sigmoid_derivative

__all__ = [
    "ElementwiseAffine",
    "Exp",
    "LeakyReLU",
    "Logit",
    "LogitTransform",
    "Scale",
    "Sigmoid",
    "SneakyReLU",
]

_ANY = [("B", "...")]


def _require(cond: Tensor, layer: str, what: str) -> None:
    if not bool(cond.all()):
        raise InvalidInputError(f"{layer}: {what}")


class ElementwiseAffine(Bijection):
    """``z = x * exp(log_scale) + shift`` with one learned scale and shift per element.

    ``shape`` is the event shape, e.g. ``(D,)`` or ``(C, H, W)``; input ``(B, *shape)``.
    Initialised to the identity.
    """

    def __init__(self, shape: int | Sequence[int]) -> None:
        super().__init__()
        self.shape = (shape,) if isinstance(shape, int) else tuple(shape)
        self.log_scale = nn.Parameter(torch.zeros(self.shape))
        self.shift = nn.Parameter(torch.zeros(self.shape))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x, [("B", *self.shape)])
        ld = self.log_scale.sum().expand(x.shape[0])
        return x * torch.exp(self.log_scale) + self.shift, ld

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._check(z, [("B", *self.shape)])
        ld = -self.log_scale.sum().expand(z.shape[0])
        return (z - self.shift) * torch.exp(-self.log_scale), ld


class Exp(Bijection):
    """``z = exp(x)``: R -> (0, inf). The inverse needs strictly positive input."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x, _ANY)
        return torch.exp(x), sum_except_batch(x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._check(z, _ANY)
        _require(z > 0, "Exp", "inverse needs strictly positive input (log of z <= 0)")
        x = torch.log(z)
        return x, -sum_except_batch(x)


class Sigmoid(Bijection):
    """``z = 1 / (1 + exp(-x))``: R -> (0, 1). The inverse needs input in (0, 1)."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x, _ANY)
        return torch.sigmoid(x), sum_except_batch(log_sigmoid_derivative(x))

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._check(z, _ANY)
        _require((z > 0) & (z < 1), "Sigmoid", "inverse needs input strictly inside (0, 1)")
        x = torch.log(z) - torch.log1p(-z)
        return x, -sum_except_batch(log_sigmoid_derivative(x))


class Logit(Bijection):
    """``z = log(x / (1 - x))``: (0, 1) -> R, the inverse of ``Sigmoid``."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x, _ANY)
        _require((x > 0) & (x < 1), "Logit", "input must lie strictly inside (0, 1)")
        z = torch.log(x) - torch.log1p(-x)
        return z, -sum_except_batch(log_sigmoid_derivative(z))

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._check(z, _ANY)
        return torch.sigmoid(z), sum_except_batch(log_sigmoid_derivative(z))


class LeakyReLU(Bijection):
    """``z = x`` for ``x >= 0`` and ``slope * x`` otherwise; ``slope > 0``."""

    def __init__(self, slope: float = 0.01) -> None:
        super().__init__()
        if not slope > 0:
            raise ValueError(f"LeakyReLU: slope must be > 0 to be invertible, got {slope}")
        self.slope = float(slope)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x, _ANY)
        neg = x < 0
        z = torch.where(neg, self.slope * x, x)
        return z, math.log(self.slope) * sum_except_batch(neg.to(x.dtype))

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._check(z, _ANY)
        neg = z < 0
        x = torch.where(neg, z / self.slope, z)
        return x, -math.log(self.slope) * sum_except_batch(neg.to(z.dtype))

    def extra_repr(self) -> str:
        return f"slope={self.slope}"


def _sneaky_log_derivative(x_over_root: Tensor, a: float) -> Tensor:
    """``log sigma'(x)`` of SneakyReLU with ``a = (1 - s) / (1 + s)``, element-wise, from
    ``x / sqrt(1 + x^2)`` (both directions have the root at hand)."""
    return torch.log1p(a * x_over_root) - math.log1p(a)


class _SneakyReLUForward(torch.autograd.Function):
    """``x -> (sigma(x), log sigma'(x))`` element-wise, with a hand-written backward.

    Autograd through the dozen element-wise ops of the two formulas keeps each
    intermediate and replays them all: fwd+bwd took 7.8 ms at (128, 16, 8, 8) in float32
    on one thread, against 4.0 ms here. Only ``x`` is saved; the backward recomputes from it
    with differentiable ops, so second derivatives stay exact.
    """

    generate_vmap_rule = True  # torch ops only: per-sample gradients (DP) can batch it

    @staticmethod
    def forward(x: Tensor, a: float) -> tuple[Tensor, Tensor]:
        xx = x * x
        s = torch.sqrt(1 + xx)
        # sqrt(1 + x^2) - 1 = x^2 / (sqrt(1 + x^2) + 1), without cancellation near 0.
        z = (x + a * xx / (s + 1)) / (1 + a)
        return z, _sneaky_log_derivative(x / s, a)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, float], output: Any) -> None:
        ctx.save_for_backward(inputs[0])
        ctx.a = inputs[1]
        ctx.set_materialize_grads(False)  # a log-det nobody reads sends no gradient

    @staticmethod
    def backward(
        ctx: Any, grad_z: Tensor | None, grad_log_derivative: Tensor | None
    ) -> tuple[Tensor | None, None]:
        (x,) = ctx.saved_tensors
        a = ctx.a
        r = torch.rsqrt(1 + x * x)
        slope = 1 + a * x * r  # (1 + a) sigma'(x)
        grad = None if grad_z is None else grad_z * slope / (1 + a)
        if grad_log_derivative is not None:  # d/dx log sigma'(x) = a r^3 / slope
            term = grad_log_derivative * (a * r * r * r) / slope
            grad = term if grad is None else grad + term
        return grad, None


class SneakyReLU(Bijection):
    """The smooth, invertible ReLU of Finzi et al. (2019).

    ``sigma(x) = (x + a (sqrt(1 + x^2) - 1)) / (1 + a)`` with ``a = (1 - s) / (1 + s)``:
    slope ``s`` as x -> -inf, 1 as x -> +inf, ``sigma(0) = 0``, and a closed-form inverse.
    """

    def __init__(self, slope: float = 0.1) -> None:
        super().__init__()
        if not 0 < slope <= 1:
            raise ValueError(f"SneakyReLU: slope must lie in (0, 1], got {slope}")
        self.slope = float(slope)
        self.a = (1 - self.slope) / (1 + self.slope)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x, _ANY)
        if self.a == 0:  # slope 1 is the identity (a model option that turns the layer off)
            return x, self._zeros(x)
        z, log_derivative = _SneakyReLUForward.apply(x, self.a)
        return z, sum_except_batch(log_derivative)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._check(z, _ANY)
        a = self.a
        if a == 0:
            return z, self._zeros(z)
        # Solve x + a sqrt(1 + x^2) = u with u = (1 + a) z + a; the root with x <= u.
        u = (1 + a) * z + a
        x = (u - a * torch.sqrt(u * u + 1 - a * a)) / (1 - a * a)
        return x, -sum_except_batch(_sneaky_log_derivative(x * torch.rsqrt(1 + x * x), a))

    def extra_repr(self) -> str:
        return f"slope={self.slope}"


class LogitTransform(Bijection):
    """RealNVP's preprocessing ``z = logit(alpha + (1 - 2 alpha) x)`` for ``x`` in [0, 1].

    Any shape ``(B, ...)``. ``alpha`` in [0, 0.5) keeps the logit away from +-inf at the
    ends of the interval (``alpha = 0`` is the plain logit and needs ``x`` in (0, 1)).
    The log-det counts the ``(1 - 2 alpha)`` factor:
    ``sum(log(1 - 2 alpha) - log p - log(1 - p))`` with ``p = alpha + (1 - 2 alpha) x``.

    Forward input outside [0, 1] (beyond a few ulps of rounding) raises
    ``InvalidInputError``. The inverse is defined on all
    of R and returns values in ``(-alpha, 1 - alpha) / (1 - 2 alpha)``; latents outside
    ``[logit(alpha), logit(1 - alpha)]`` (which data never produces, but samples can) map
    slightly outside [0, 1], so clamp samples before display.
    """

    def __init__(self, alpha: float = 0.05) -> None:
        super().__init__()
        if not 0 <= alpha < 0.5:
            raise ValueError(f"LogitTransform: alpha must lie in [0, 0.5), got {alpha}")
        self.alpha = float(alpha)
        self._log_range = math.log1p(-2 * self.alpha)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x, _ANY)
        if self.alpha > 0:
            # A few ulps of slack: inverse(forward(0)) may come back as -1e-17, and the map
            # is well defined there; anything visibly outside [0, 1] is a data error.
            tol = 8 * torch.finfo(x.dtype).eps
            inside = (x >= -tol) & (x <= 1 + tol)
            where = "[0, 1]"
        else:
            inside = (x > 0) & (x < 1)
            where = "(0, 1) (alpha = 0)"
        if value_checks_active() and not bool(inside.all()):
            bad = int((~inside).sum())
            raise InvalidInputError(
                f"LogitTransform: input must lie in {where}; {bad} values do not "
                f"(range [{x.min().item():.4g}, {x.max().item():.4g}])"
            )
        p = self.alpha + (1 - 2 * self.alpha) * x
        log_p, log_1mp = torch.log(p), torch.log1p(-p)
        ld = sum_except_batch(self._log_range - log_p - log_1mp)
        return log_p - log_1mp, ld

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._check(z, _ANY)
        x = (torch.sigmoid(z) - self.alpha) / (1 - 2 * self.alpha)
        ld = sum_except_batch(log_sigmoid_derivative(z) - self._log_range)
        return x, ld

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class Scale(Bijection):
    """A fixed affine map ``z = factor * x + shift`` on any shape ``(B, ...)``.

    Log-det ``D log|factor|``. ``Scale(1.0, -0.5)`` maps [0, 1] to [-0.5, 0.5] (Glow's
    preprocessing); ``Inverse(Scale(a, b))`` undoes it.
    """

    def __init__(self, factor: float, shift: float = 0.0) -> None:
        super().__init__()
        if not math.isfinite(factor) or factor == 0:
            raise ValueError(f"Scale: factor must be finite and non-zero, got {factor}")
        if not math.isfinite(shift):
            raise ValueError(f"Scale: shift must be finite, got {shift}")
        self.factor = float(factor)
        self.shift = float(shift)
        self._log_factor = math.log(abs(self.factor))

    def _logdet(self, x: Tensor) -> Tensor:
        return x.new_full((x.shape[0],), x[0].numel() * self._log_factor)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x, _ANY)
        return x * self.factor + self.shift, self._logdet(x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._check(z, _ANY)
        return (z - self.shift) / self.factor, -self._logdet(z)

    def extra_repr(self) -> str:
        return f"factor={self.factor}, shift={self.shift}"
