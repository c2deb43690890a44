"""Base distributions and ``Flow``: a base distribution pushed through a bijection."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution as TorchDistribution
from torch.distributions import constraints

from .core import (
    Bijection,
    InvalidInputError,
    apply_layer,
    check_context_features,
    describe_shape,
    sum_except_batch,
    value_checks_active,
)

__all__ = [
    "ClassGaussianMixture",
    "ConditionalDiagonalGaussian",
    "ConditionedFlow",
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

    _anchor: Tensor
    #: Whether ``log_prob``/``sample`` take ``context=`` (a conditional base, ``p(z | c)``).
    takes_context: bool = False

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


class ConditionalDiagonalGaussian(Distribution):
    """``N(mu(c), diag(sigma(c)^2))`` whose mean and log-scale are a linear map of a
    ``(B, context_features)`` context: Glow's class-conditional prior, with ``c`` a one-hot
    label. The map starts at zero, so the base starts as ``N(0, I)`` for every ``c``.

    ``log_prob(z, context)``: ``(B, *event_shape), (B, K) -> (B,)``;
    ``sample(n, temperature, context)`` with ``context`` ``(n, K)`` scales ``sigma`` by
    ``temperature``.
    """

    takes_context = True

    def __init__(self, event_shape: Sequence[int], context_features: int) -> None:
        super().__init__(event_shape)
        self.context_features = check_context_features("ConditionalDiagonalGaussian",
                                                       context_features, minimum=1)
        self.net = nn.Linear(context_features, 2 * self.event_shape.numel())
        nn.init.zeros_(self.net.weight)
        nn.init.zeros_(self.net.bias)

    def loc_log_scale(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, K) -> (B, *event_shape)`` twice: the mean and the log standard deviation."""
        if context.dim() != 2 or context.shape[1] != self.context_features:
            raise InvalidInputError(f"ConditionalDiagonalGaussian: expected context of shape "
                                    f"(B, {self.context_features}), got "
                                    f"{describe_shape(tuple(context.shape))}")
        loc, log_scale = self.net(context.to(self.net.weight.dtype)).chunk(2, dim=1)
        shape = (context.shape[0], *self.event_shape)
        return loc.reshape(shape), log_scale.reshape(shape)

    def log_prob(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        self._check_event(z)
        loc, log_scale = self.loc_log_scale(self._needs(context))
        u = (z - loc) * torch.exp(-log_scale)
        return (-0.5 * sum_except_batch(u**2) - sum_except_batch(log_scale)
                - 0.5 * self.event_shape.numel() * _LOG_2PI)

    def sample(self, n: int, temperature: float = 1.0,
               context: Tensor | None = None) -> Tensor:
        loc, log_scale = self.loc_log_scale(self._needs(context))
        if loc.shape[0] != n:
            raise InvalidInputError(f"ConditionalDiagonalGaussian: {loc.shape[0]} context rows "
                                    f"for {n} samples")
        eps = torch.randn(self._noise_shape(n), device=loc.device, dtype=loc.dtype)
        return loc + temperature * torch.exp(log_scale) * eps

    def _needs(self, context: Tensor | None) -> Tensor:
        if context is None:
            raise InvalidInputError("ConditionalDiagonalGaussian: this base is conditional; "
                                    f"pass context of shape (B, {self.context_features})")
        return context

    def extra_repr(self) -> str:
        return f"event_shape={tuple(self.event_shape)}, context_features={self.context_features}"


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


class ClassGaussianMixture(Distribution):
    """FlowGMM's latent prior: one unit-covariance Gaussian ``N(mu_k, I)`` per class ``k``,
    with equal weights ``1 / n_classes``.

    The means are fixed, drawn once as ``scale * N(0, I)`` from ``seed`` and stored as a
    buffer (they travel with checkpoints). ``class_log_probs(z)`` gives the joint
    ``log p(z, k)`` as ``(B, K)``; ``log_prob(z)`` the marginal ``(B,)``; ``sample(n, T,
    labels)`` draws from the chosen classes (``labels`` ``(n,)``; default uniform).
    """

    means: Tensor

    def __init__(self, event_shape: Sequence[int], n_classes: int, scale: float = 1.0,
                 seed: int = 0) -> None:
        super().__init__(event_shape)
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
            raise ValueError(f"ClassGaussianMixture: n_classes must be an int >= 2, got "
                             f"{n_classes!r}")
        if not (isinstance(scale, numbers.Real) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"ClassGaussianMixture: scale must be a number > 0, got {scale!r}")
        self.n_classes: int = int(n_classes)
        self.scale: float = float(scale)
        g = torch.Generator().manual_seed(int(seed))
        self.register_buffer("means", self.scale * torch.randn(n_classes, *self.event_shape,
                                                               generator=g))

    def class_log_probs(self, z: Tensor) -> Tensor:
        """``(B, *event_shape) -> (B, K)``: ``log N(z; mu_k, I) + log(1 / K)``."""
        self._check_event(z)
        flat = z.reshape(z.shape[0], -1)
        mu = self.means.reshape(self.n_classes, -1).to(flat.dtype)
        # |z - mu|^2 expanded, so that no (B, K, D) tensor is formed.
        sq = ((flat * flat).sum(1, keepdim=True) - 2 * flat @ mu.T
              + (mu * mu).sum(1).unsqueeze(0)).clamp_min(0)
        d = flat.shape[1]
        return -0.5 * sq - 0.5 * d * _LOG_2PI - math.log(self.n_classes)

    def log_prob(self, z: Tensor) -> Tensor:
        return torch.logsumexp(self.class_log_probs(z), dim=1)

    def sample(self, n: int, temperature: float = 1.0, labels: Tensor | None = None) -> Tensor:
        shape = self._noise_shape(n)
        mu = self.means
        if labels is None:
            labels = torch.randint(self.n_classes, (n,), device=mu.device)
        labels = torch.as_tensor(labels, device=mu.device).long()
        if labels.shape != (n,) or labels.min() < 0 or labels.max() >= self.n_classes:
            raise InvalidInputError(f"ClassGaussianMixture: labels must be {n} class indices "
                                    f"in [0, {self.n_classes - 1}]")
        return mu[labels] + temperature * torch.randn(shape, device=mu.device, dtype=mu.dtype)

    def extra_repr(self) -> str:
        return f"n_classes={self.n_classes}, scale={self.scale}"


def _as_sample_shape(sample_shape: int | Sequence[int]) -> torch.Size:
    """``n`` -> ``(n,)``; a shape stays itself (``()`` is one sample without a batch axis)."""
    # `int` is an Integral already; naming it lets mypy narrow the union.
    if isinstance(sample_shape, (int, numbers.Integral)):
        return torch.Size([int(sample_shape)])
    return torch.Size(sample_shape)


class Flow(nn.Module, TorchDistribution):
    """A normalizing flow: ``x = bijection.inverse(z)``, ``z ~ base``.

    ``bijection`` maps data ``x`` (shape ``(B, *event_shape)``) to latent ``z`` of the
    base's shape. ``log_prob(x) = base.log_prob(z) + log|det dz/dx|``.

    A ``Flow`` is both an ``nn.Module`` (parameters, ``state_dict``, ``.to()``, DDP via
    ``forward = log_prob``) and a ``torch.distributions.Distribution`` with
    ``batch_shape = ()`` and ``event_shape`` the data shape (``event_shape`` argument,
    default the base's, for bijections that keep the shape). ``sample``/``rsample`` take
    an int ``n`` or a ``sample_shape`` and return ``(*sample_shape, *event_shape)``;
    ``log_prob`` takes ``(*sample_shape, *event_shape)`` and returns ``sample_shape``.
    ``rsample`` is reparameterised: the base samples are (all bases here are), and the
    gradient flows through ``bijection.inverse``.

    A conditional flow (a bijection with ``takes_context``) models ``p(x | c)``: pass
    ``context=c`` to ``log_prob``, ``sample``, ``rsample`` and ``sample_and_log_prob``;
    ``c`` is ``(B, K)`` with one row per data point or sample, or ``(K,)`` for all of them.
    ``flow.bijection(x, context=c)`` encodes and ``flow.bijection.inverse(z, context=c)``
    decodes. A context given to an unconditional flow is refused, not ignored.
    ``flow.condition(c)`` is ``p(x | c)`` as a ``torch.distributions.Distribution`` of
    ``batch_shape (B,)``, for code that takes distributions (zuko's ``flow(c)``).
    """

    has_rsample = True

    def __init__(
        self,
        bijection: Bijection,
        base: Distribution,
        event_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()  # nn.Module's; it does not chain to Distribution.__init__
        if not isinstance(bijection, Bijection):
            raise TypeError(f"Flow takes a Bijection, got {type(bijection).__name__}")
        if not isinstance(base, Distribution):
            raise TypeError(f"Flow takes a Distribution base, got {type(base).__name__}")
        self.bijection = bijection
        self.base = base
        shape = base.event_shape if event_shape is None else torch.Size(event_shape)
        TorchDistribution.__init__(self, torch.Size(), shape, validate_args=False)

    @property
    def arg_constraints(self) -> dict[str, constraints.Constraint]:
        return {}  # a flow has weights, not distribution parameters to validate

    @property
    def support(self) -> constraints.Constraint:
        """Real-valued events; the bijection's own domain (e.g. [0, 1] after a logit) is
        enforced by the bijection, which raises ``InvalidInputError`` outside it."""
        return constraints.independent(constraints.real, len(self.event_shape))

    @staticmethod
    def _check_finite(x: Tensor, what: str) -> None:
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise InvalidInputError(f"Flow: {what} must be a floating-point tensor")
        if value_checks_active() and not torch.isfinite(x).all():
            bad = (~torch.isfinite(x)).sum().item()
            raise InvalidInputError(f"Flow: {what} has {bad} non-finite values (nan or inf)")

    @property
    def conditional(self) -> bool:
        """Whether the flow models ``p(x | context)`` (its bijection or base reads one)."""
        return self.bijection.takes_context or self.base.takes_context

    def _base_log_prob(self, z: Tensor, context: Tensor | None) -> Tensor:
        return self.base.log_prob(z, context) if self.base.takes_context else (  # type: ignore[call-arg]
            self.base.log_prob(z))

    def _base_sample(self, n: int, temperature: float, context: Tensor | None) -> Tensor:
        if self.base.takes_context:
            return self.base.sample(n, temperature, context)  # type: ignore[call-arg]
        return self.base.sample(n, temperature)

    def _context(self, context: Tensor | None, n: int) -> Tensor | None:
        """``(K,)`` or ``(n, K)`` -> ``(n, K)``; None stays None on an unconditional flow."""
        if context is None:
            if self.conditional:
                raise InvalidInputError(
                    "Flow: this flow is conditional, p(x | context); pass context= with one "
                    "row per data point or sample, (B, K), or a single (K,) one for all"
                )
            return None
        if not self.conditional:
            raise InvalidInputError(
                "Flow: a context was given, but this flow is unconditional (its bijection "
                "takes no context)"
            )
        self._check_finite(context, "context")
        if context.dim() == 0:
            raise InvalidInputError("Flow: context must be (B, K) or (K,), got a scalar")
        if context.dim() == 1:
            return context.unsqueeze(0).expand(n, -1)
        if context.shape[0] != n:
            raise InvalidInputError(
                f"Flow: context has {context.shape[0]} rows for {n} data points or samples; "
                "give one row each, or a single (K,) context for all"
            )
        return context

    def condition(self, context: Tensor) -> ConditionedFlow:
        """``p(x | context)`` for a ``(B, K)`` (or ``(K,)``) context, as a torch
        ``Distribution`` with ``batch_shape (B,)`` (``()`` for ``(K,)``)."""
        if not self.conditional:
            raise InvalidInputError("Flow.condition: this flow is unconditional (its bijection "
                                    "takes no context)")
        self._check_finite(context, "context")
        return ConditionedFlow(self, context)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Alias of ``log_prob`` so that wrappers such as DDP see the training objective."""
        return self.log_prob(x, context)

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """``(*sample_shape, *event_shape) -> sample_shape``: log-density of ``x`` in nats.

        The usual case is a batch ``(B, *event_shape) -> (B,)``; a conditional flow takes
        ``context`` ``(B, K)`` (or ``(K,)`` for every row) and gives ``log p(x | context)``.
        """
        self._check_finite(x, "input")
        lead = x.dim() - len(self.event_shape)
        if lead != 1 and lead >= 0 and x.shape[lead:] == self.event_shape:
            # Any other number of sample axes: flatten them into one batch axis and back.
            sample_shape = x.shape[:lead]
            flat = x.reshape(sample_shape.numel(), *self.event_shape)
            c = self._context(context, flat.shape[0])
            return self._log_prob(flat, c).reshape(sample_shape)
        # A batch, or a wrong shape for the layers to report.
        return self._log_prob(x, self._context(context, x.shape[0] if x.dim() else 1))

    def _log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        z, logabsdet = apply_layer(self.bijection, x, context)
        if z.dtype in (torch.bfloat16, torch.float16):
            # Under autocast a layer can hand back a half-precision latent; its density is a
            # sum of thousands of squares, which needs float32.
            z = z.float()
        return self._base_log_prob(z, context) + logabsdet

    def rsample(
        self,
        sample_shape: int | Sequence[int] = torch.Size(),
        temperature: float = 1.0,
        context: Tensor | None = None,
    ) -> Tensor:
        """Differentiable samples ``(*sample_shape, *event_shape)``; an int ``n`` is ``(n,)``.

        ``context``: ``(K,)`` for every sample, or one row per sample ``(n, K)``.
        """
        shape = _as_sample_shape(sample_shape)
        c = self._context(context, shape.numel())
        z = self._base_sample(shape.numel(), temperature, c)
        x, _ = apply_layer(self.bijection, z, c, inverse=True)
        return x.reshape(*shape, *x.shape[1:])

    @torch.no_grad()
    def sample(
        self,
        sample_shape: int | Sequence[int] = torch.Size(),
        temperature: float = 1.0,
        context: Tensor | None = None,
    ) -> Tensor:
        """Samples ``(*sample_shape, *event_shape)`` without gradients: ``sample(n)`` gives
        ``(n, *event_shape)``; ``temperature < 1`` gives sharper samples; ``context`` as in
        ``rsample``."""
        return self.rsample(sample_shape, temperature, context)

    def sample_and_log_prob(
        self, n: int | Sequence[int], context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draw samples and their log-densities in one pass (no forward re-run).

        An int ``n`` gives ``(n, *event_shape)`` and ``(n,)``; a shape gives
        ``(*shape, *event_shape)`` and ``shape``. Differentiable, like ``rsample``.
        """
        shape = _as_sample_shape(n)
        c = self._context(context, shape.numel())
        z = self._base_sample(shape.numel(), 1.0, c)
        log_pz = self._base_log_prob(z, c)
        x, inv_logabsdet = apply_layer(self.bijection, z, c, inverse=True)
        return x.reshape(*shape, *x.shape[1:]), (log_pz - inv_logabsdet).reshape(shape)

    def bits_per_dim(
        self, x: Tensor, n_bins: int = 256, context: Tensor | None = None
    ) -> Tensor:
        """``(B, *shape) -> (B,)``: bits per dimension of discrete data.

        ``x`` is dequantized data scaled to [0, 1], i.e. ``(k + u) / n_bins`` for integer
        levels ``k`` and noise ``u`` in [0, 1). Any preprocessing bijection (logit, scaling)
        inside ``self.bijection`` is counted by ``log_prob``; the ``n_bins`` term accounts for
        the scaling of the integer grid to [0, 1].
        """
        if n_bins < 2:
            raise InvalidInputError(f"Flow.bits_per_dim: n_bins must be >= 2, got {n_bins}")
        dims = x[0].numel()
        log_p = self.log_prob(x, context) - dims * math.log(n_bins)
        return -log_p / (dims * math.log(2.0))


class ConditionedFlow(TorchDistribution):
    """A conditional ``Flow`` at fixed contexts: ``p(x | c_b)`` for each row ``b`` of ``c``.

    ``batch_shape`` is ``(B,)`` for ``c`` of shape ``(B, K)`` (``()`` for ``(K,)``).
    ``log_prob`` takes ``(*sample_shape, *batch_shape, *event_shape)`` and returns
    ``(*sample_shape, *batch_shape)``; ``sample``/``rsample(sample_shape)`` return
    ``(*sample_shape, *batch_shape, *event_shape)``. Built by ``Flow.condition``.
    """

    has_rsample = True

    def __init__(self, flow: Flow, context: Tensor) -> None:
        if context.dim() not in (1, 2):
            raise InvalidInputError(f"Flow.condition: context must be (B, K) or (K,), got "
                                    f"{describe_shape(tuple(context.shape))}")
        self.flow, self.context = flow, context
        super().__init__(context.shape[:-1], flow.event_shape, validate_args=False)

    @property
    def arg_constraints(self) -> dict[str, constraints.Constraint]:
        return {}

    @property
    def support(self) -> constraints.Constraint:
        return self.flow.support

    def _rows(self, n: int) -> Tensor:
        """The context of ``n`` draws of every batch row, ``(n * B, K)``, row-major."""
        c = self.context.reshape(-1, self.context.shape[-1])
        return c.repeat(n, 1)

    def log_prob(self, x: Tensor) -> Tensor:
        lead = x.dim() - len(self.event_shape) - len(self.batch_shape)
        if lead < 0 or tuple(x.shape[lead:]) != (*self.batch_shape, *self.event_shape):
            raise InvalidInputError(
                f"ConditionedFlow: expected shape (..., "
                f"{', '.join(str(s) for s in (*self.batch_shape, *self.event_shape))}), got "
                f"{describe_shape(tuple(x.shape))}")
        sample_shape = x.shape[:lead]
        n = sample_shape.numel()
        flat = x.reshape(n * self.batch_shape.numel(), *self.event_shape)
        return self.flow.log_prob(flat, self._rows(n)).reshape(*sample_shape,
                                                                *self.batch_shape)

    def rsample(self, sample_shape: int | Sequence[int] = torch.Size()) -> Tensor:
        shape = _as_sample_shape(sample_shape)
        n = shape.numel()
        x = self.flow.rsample(n * self.batch_shape.numel(), context=self._rows(n))
        return x.reshape(*shape, *self.batch_shape, *self.event_shape)

    @torch.no_grad()
    def sample(self, sample_shape: int | Sequence[int] = torch.Size()) -> Tensor:
        return self.rsample(sample_shape)
