"""The Flow-VAE: a convolutional VAE whose approximate posterior is a Gaussian pushed
through invertible maps conditioned on the encoder (Rezende & Mohamed 2015; Kingma et al.
2016).

``q(z | x)``: ``z0 = mu(x) + sigma(x) * eps``, ``z = f(z0; h(x))`` with ``f`` a stack of
the library's own conditional bijections, run in their forward (one-pass) direction, so
``log q(z | x) = log N(z0; mu, sigma) - log|det dz/dz0|``. The posteriors:

- ``diagonal``: no flow, the plain VAE;
- ``planar``: ``PlanarFlow`` steps, amortized on ``h(x)``;
- ``iaf``: ``MaskedAutoregressive`` steps, whose forward pass ``z_i = z0_i exp(s_i) + t_i``
  with ``(t_i, s_i)`` functions of ``z0_{<i}`` and ``h(x)`` is Kingma et al.'s IAF step;
  the order alternates between steps;
- ``coupling``: RealNVP ``AffineCoupling`` steps with alternating masks, conditioned on
  ``h(x)``.

The prior is ``N(0, I)``; the decoder's output goes to a ``Likelihood`` (Bernoulli or a
discretized logistic on grey levels).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..core import Bijection, InvalidInputError, Sequential, describe_shape
from ..layers.autoregressive import MaskedAutoregressive
from ..layers.coupling import AffineCoupling
from ..layers.masks import alternating_mask
from ..layers.planar import PlanarFlow
from ..nets import MLP
from .likelihoods import Likelihood, make_likelihood

__all__ = ["POSTERIORS", "VAE", "build_posterior_flow"]

POSTERIORS = ("diagonal", "planar", "iaf", "coupling")
_LOG_2PI = math.log(2 * math.pi)
# Steps when none are given: one planar step is a rank-one change, so it takes many
# (van den Berg et al. use 16); an IAF or coupling step transforms every coordinate.
_DEFAULT_STEPS = {"diagonal": 0, "planar": 16, "iaf": 4, "coupling": 4}


def build_posterior_flow(kind: str, latent: int, context: int, steps: int,
                         hidden: int) -> Bijection | None:
    """The flow of a ``kind`` posterior on ``(B, latent)`` given a ``(B, context)`` vector;
    None for ``diagonal``."""
    if kind == "diagonal":
        return None
    if kind == "planar":
        return Sequential(*[PlanarFlow(latent, context_features=context)
                            for _ in range(steps)])
    if kind == "iaf":
        forward_order, backward_order = list(range(latent)), list(reversed(range(latent)))
        return Sequential(*[
            MaskedAutoregressive(latent, hidden=hidden, layers=2, context_features=context,
                                 order=backward_order if i % 2 else forward_order)
            for i in range(steps)])
    if kind == "coupling":
        return Sequential(*[
            AffineCoupling(alternating_mask(latent, flip=bool(i % 2)),
                           lambda n_in, n_out: MLP(n_in, n_out, hidden=hidden, layers=2),
                           context_features=context)
            for i in range(steps)])
    raise ValueError(f"unknown posterior '{kind}' (choose from {', '.join(POSTERIORS)})")


def _conv_stack(c_in: int, width: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, width, 4, stride=2, padding=1), nn.ELU(),
        nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.ELU(),
    )


class VAE(nn.Module):
    """A VAE on images ``(B, C, H, W)`` (H and W divisible by 4) with a flow posterior.

    The encoder (two stride-2 4x4 convs, a linear layer of width ``hidden``) gives
    ``h(x)``, and from it ``mu`` and ``log sigma`` of ``z0`` ``(B, latent)``; the decoder
    mirrors it with transposed convs. ``x`` is the likelihood's data: 0/1 floats for
    ``bernoulli``, levels for ``logistic``; the encoder sees ``x`` scaled to [0, 1].
    """

    def __init__(self, shape: tuple[int, int, int], latent: int = 32, hidden: int = 256,
                 width: int = 32, posterior: str = "diagonal", steps: int | None = None,
                 flow_hidden: int = 256, likelihood: str = "bernoulli",
                 n_bins: int | None = 256) -> None:
        super().__init__()
        c, h, w = (int(s) for s in shape)
        if h % 4 or w % 4:
            raise ValueError(f"VAE: image height and width must be multiples of 4, got {h}x{w}")
        for name, v in (("latent", latent), ("hidden", hidden), ("width", width),
                        ("flow_hidden", flow_hidden)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"VAE: {name} must be an integer >= 1, got {v!r}")
        if posterior not in POSTERIORS:
            raise ValueError(f"VAE: unknown posterior '{posterior}' (choose from "
                             f"{', '.join(POSTERIORS)})")
        steps = _DEFAULT_STEPS[posterior] if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0 or (
                posterior != "diagonal" and steps < 1):
            raise ValueError(f"VAE: steps must be an integer >= 1 for a flow posterior, got "
                             f"{steps!r}")
        if posterior in ("iaf", "coupling") and latent < 2:
            raise ValueError(f"VAE: the {posterior} posterior needs latent >= 2")
        self.shape = (c, h, w)
        self.latent, self.posterior_kind, self.steps = latent, posterior, steps
        self.likelihood: Likelihood = make_likelihood(likelihood, n_bins)
        self.n_bins = n_bins
        feat = 2 * width * (h // 4) * (w // 4)
        self.encoder = nn.Sequential(_conv_stack(c, width), nn.Flatten(),
                                     nn.Linear(feat, hidden), nn.ELU())
        self.to_mu = nn.Linear(hidden, latent)
        self.to_log_sigma = nn.Linear(hidden, latent)
        self.flow = build_posterior_flow(posterior, latent, hidden, steps, flow_hidden)
        p = self.likelihood.params_per_pixel
        self.decoder = nn.Sequential(
            nn.Linear(latent, hidden), nn.ELU(), nn.Linear(hidden, feat), nn.ELU(),
            nn.Unflatten(1, (2 * width, h // 4, w // 4)),
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1), nn.ELU(),
            nn.ConvTranspose2d(width, p * c, 4, stride=2, padding=1),
        )

    # -- pieces ------------------------------------------------------------------------------
    def _encoder_input(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.shape:
            raise InvalidInputError(f"VAE: expected images of shape "
                                    f"{describe_shape(('B', *self.shape))}, got "
                                    f"{describe_shape(tuple(x.shape))}")
        x = x.to(self.to_mu.weight.dtype)
        if self.likelihood.name == "logistic":
            assert self.n_bins is not None
            return x / (self.n_bins - 1)
        return x

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``x -> (mu, log_sigma, h)``: ``(B, latent)``, ``(B, latent)``, ``(B, hidden)``."""
        h = self.encoder(self._encoder_input(x))
        return self.to_mu(h), self.to_log_sigma(h), h

    def push(self, z0: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """``z0 -> z = f(z0; h)`` and ``log|det dz/dz0|`` ``(N,)`` (identity for diagonal)."""
        if self.flow is None:
            return z0, z0.new_zeros(z0.shape[0])
        return self.flow(z0, context=h)

    def decode(self, z: Tensor) -> Tensor:
        """``(N, latent) -> (N, params * C, H, W)``: the likelihood's raw parameters."""
        return self.decoder(z)

    def posterior_sample(self, x: Tensor, samples: int = 1) -> tuple[Tensor, Tensor]:
        """``z ~ q(z | x)`` as ``(samples, B, latent)`` and ``log q(z | x)`` ``(samples, B)``."""
        mu, log_sigma, h = self.encode(x)
        b = mu.shape[0]
        eps = torch.randn(samples, *mu.shape, dtype=mu.dtype, device=mu.device)
        z0 = (mu + torch.exp(log_sigma) * eps).reshape(samples * b, -1)
        log_q0 = (-0.5 * eps.pow(2) - log_sigma - 0.5 * _LOG_2PI).sum(-1)
        z, ld = self.push(z0, h.repeat(samples, 1))
        return z.reshape(samples, b, -1), log_q0 - ld.reshape(samples, b)

    @staticmethod
    def prior_log_prob(z: Tensor) -> Tensor:
        """``log N(z; 0, I)`` over the last axis."""
        return (-0.5 * z.pow(2) - 0.5 * _LOG_2PI).sum(-1)

    def log_likelihood(self, z: Tensor, x: Tensor) -> Tensor:
        """``log p(x | z)``: ``z`` ``(S, B, latent)``, ``x`` ``(B, ...)`` -> ``(S, B)``."""
        s, b = z.shape[:2]
        out = self.decode(z.reshape(s * b, -1))
        target = x.to(out.dtype).unsqueeze(0).expand(s, *x.shape).reshape(s * b, *x.shape[1:])
        return self.likelihood.log_prob(out, target).reshape(s, b)

    # -- bounds ------------------------------------------------------------------------------
    def elbo_terms(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """One-sample ``(log p(x | z), log q(z | x) - log p(z))``, each ``(B,)``: the ELBO
        is their difference; the second is a Monte Carlo estimate of the KL."""
        z, log_q = self.posterior_sample(x, 1)
        return self.log_likelihood(z, x)[0], (log_q - self.prior_log_prob(z))[0]

    @torch.no_grad()
    def iwae(self, x: Tensor, k: int = 1000, chunk: int = 100) -> Tensor:
        """The importance-weighted bound ``log (1/k) sum_i p(x, z_i) / q(z_i | x)`` ``(B,)``,
        with ``k`` posterior samples drawn ``chunk`` at a time; it rises to ``log p(x)``
        with ``k`` and equals the ELBO's estimate at ``k = 1``."""
        if k < 1:
            raise ValueError(f"VAE.iwae: k must be >= 1, got {k}")
        parts = []
        for start in range(0, k, chunk):
            n = min(chunk, k - start)
            z, log_q = self.posterior_sample(x, n)
            parts.append(self.log_likelihood(z, x) + self.prior_log_prob(z) - log_q)
        w = torch.cat(parts, dim=0)
        return torch.logsumexp(w, dim=0) - math.log(k)

    # -- codes and pictures -------------------------------------------------------------------
    @torch.no_grad()
    def posterior_mean(self, x: Tensor, samples: int = 16) -> Tensor:
        """``E_q[z | x]`` ``(B, latent)``: ``mu`` for the diagonal posterior, else a
        ``samples``-sample average (a flow moves the mean)."""
        if self.flow is None:
            return self.encode(x)[0]
        return self.posterior_sample(x, samples)[0].mean(0)

    @torch.no_grad()
    def mean_image(self, z: Tensor) -> Tensor:
        """``(N, latent) -> (N, C, H, W)`` in [0, 1]: the decoder's mean (Bernoulli
        probabilities, or the logistic's location), the usual way to show a VAE's output."""
        return self.likelihood.mean(self.decode(z))

    def extra_repr(self) -> str:
        return (f"shape={self.shape}, latent={self.latent}, posterior={self.posterior_kind}, "
                f"steps={self.steps}, likelihood={self.likelihood.name}")
