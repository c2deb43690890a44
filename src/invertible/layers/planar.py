"""Planar flow (Rezende & Mohamed 2015): a rank-one residual map with an exact inverse."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import Bijection, InvalidInputError, check_context

__all__ = ["PlanarFlow"]

_MAX_ITER = 200  # bisection alone needs ~60-80 halvings of the bracket in float64


class PlanarFlow(Bijection):
    """``z = x + û tanh(w·x + b)`` on ``(B, features)``, data -> latent.

    ``log|det dz/dx| = log(1 + tanh'(w·x + b) w·û)``, shape ``(B,)``. ``û`` is ``u`` moved
    along ``w`` so that ``w·û = -1 + softplus(w·u) > -1`` (the paper's appendix): ``w·z`` is
    then strictly increasing in ``w·x``, and given ``w·x`` the rest is a translation, hence a
    bijection. The inverse solves for ``w·x`` by safeguarded Newton, to round-off.

    With ``context_features = K > 0`` the layer is conditional (``takes_context``):
    ``forward(x, context)`` and ``inverse(z, context)`` need ``context`` of shape ``(B, K)``,
    and ``(u, w, b)`` are the free parameters plus a linear map of it (zero at init).
    """

    def __init__(self, features: int, context_features: int = 0) -> None:
        super().__init__()
        if features < 1 or context_features < 0:
            raise ValueError(
                f"PlanarFlow: need features >= 1 and context_features >= 0, "
                f"got {features} and {context_features}"
            )
        self.features = features
        self.context_features = context_features
        self.takes_context = context_features > 0
        # |w| ~ 1 puts the tanh's bend on unit-scale data; a tiny w would make û ~ 1/|w| large
        # (w·û is pinned near m(0) = -0.31) and its gradient ~ 1/|w|^2. Small u: mild at init.
        self.w = nn.Parameter(torch.randn(features) / math.sqrt(features))
        self.u = nn.Parameter(0.01 * torch.randn(features))
        self.b = nn.Parameter(torch.zeros(()))
        self.context_net: nn.Linear | None = None
        if self.takes_context:
            self.context_net = nn.Linear(context_features, 2 * features + 1)
            nn.init.zeros_(self.context_net.weight)  # start at the free parameters
            nn.init.zeros_(self.context_net.bias)

    def _context(self, x: Tensor, context: Tensor | None) -> Tensor | None:
        name, k = type(self).__name__, self.context_features
        if not self.takes_context:
            if context is not None:
                raise InvalidInputError(f"{name}: this layer is unconditional; got a context")
            return None
        return check_context(self, context, x, k)

    def _params(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(û, w, b, w·û)`` shaped ``(B|1, D), (B|1, D), (B|1,), (B|1,)``."""
        self._check(x, [("B", self.features)])
        ctx = self._context(x, context)
        u, w, b = self.u.unsqueeze(0), self.w.unsqueeze(0), self.b.unsqueeze(0)
        if ctx is not None and self.context_net is not None:
            d = self.features
            delta = self.context_net(ctx)
            u, w, b = u + delta[:, :d], w + delta[:, d : 2 * d], b + delta[:, 2 * d]
        wu = (w * u).sum(-1, keepdim=True)
        # Guard |w|^2: at w = 0 the map is a translation and the correction term is moot.
        ww = (w * w).sum(-1, keepdim=True).clamp_min(max(1e-12, torch.finfo(w.dtype).tiny))
        u_hat = u + (F.softplus(wu) - 1 - wu) * w / ww
        return u_hat, w, b, (w * u_hat).sum(-1)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        u_hat, w, b, c = self._params(x, context)
        h = torch.tanh((w * x).sum(-1) + b)
        return x + u_hat * h.unsqueeze(-1), torch.log1p((1 - h * h) * c)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        u_hat, w, b, c = self._params(z, context)
        y = (w * z).sum(-1)  # = a + c tanh(a + b) with a = w·x, strictly increasing in a
        with torch.no_grad():
            a = _solve(y.detach(), c.detach(), b.detach())
        # One more Newton step, with autograd: the value stays at the root (to round-off) and
        # its gradient is the implicit-function one, -(dg/dθ) / (dg/da).
        t = torch.tanh(a + b)
        a = a - (a + c * t - y) / (1 + c * (1 - t * t))
        h = torch.tanh(a + b)
        return z - u_hat * h.unsqueeze(-1), -torch.log1p((1 - h * h) * c)


def _solve(y: Tensor, c: Tensor, b: Tensor) -> Tensor:
    """The root ``a`` of ``g(a) = a + c tanh(a + b) - y`` per row, for ``c > -1``.

    ``|tanh| <= 1`` brackets it in ``[y - |c|, y + |c|]``. A Newton step is taken when it
    stays strictly inside the (shrinking) bracket and at least halves the step before last;
    otherwise the bracket is bisected (``rtsafe``), so convergence is never slower than
    bisection. Each row stops on its own criterion: its result ignores the other rows.
    """
    y, c, b = torch.broadcast_tensors(y, c, b)
    lo, hi = y - c.abs(), y + c.abs()
    a = (y - c * torch.tanh(y + b)).clamp(lo, hi)  # exact where the tanh is saturated
    tol = 4 * torch.finfo(y.dtype).eps
    dx = dx_old = hi - lo
    done = torch.zeros_like(y, dtype=torch.bool)
    for _ in range(_MAX_ITER):
        t = torch.tanh(a + b)
        g = a + c * t - y
        lo, hi = torch.where(g < 0, a, lo), torch.where(g > 0, a, hi)
        step = g / (1 + c * (1 - t * t))
        newton = a - step
        scale = tol * (1 + a.abs())
        small = step.abs() <= scale  # converged: a Newton step below round-off
        ok = small | ((newton > lo) & (newton < hi) & (2 * step.abs() <= dx_old.abs()))
        new = torch.where(ok, newton, (lo + hi) / 2)  # also replaces a NaN step
        dx, dx_old = torch.where(ok, step, (hi - lo) / 2), dx
        a = torch.where(done, a, new)
        done = done | small | (hi - lo <= scale)
        if bool(done.all()):
            break
    return a
