"""The discretized logistic mixture: the integer flow's prior on each latent symbol.

A latent ``z`` (an integer) has probability ``sum_k pi_k [sig((z + 1/2 - mu_k) / s_k) -
sig((z - 1/2 - mu_k) / s_k)]``. Parameters are stored as one tensor ``(..., 3K)``: ``K``
mixture logits, ``K`` means, ``K`` log-scales, in that order.

Training uses ``log_prob`` (float32, autograd). The entropy coder uses ``windows`` and
``probability_table``: float64, elementwise arithmetic only (no reductions whose order a
thread count could change), so the encoder and the decoder, given the same parameters,
build the same table bit for bit. A table covers only the symbols near the mixture's
components (``windows``), so its cost follows the model's uncertainty, not the alphabet.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["LOG_SCALE_MAX", "LOG_SCALE_MIN", "MIN_WEIGHT", "TAIL", "log_prob",
           "probability_table", "sample", "split_params", "windows"]

# A table covers this many scales either side of each component's mean (the logistic's
# mass beyond is 1e-5), for the components of at least this weight; the rest of the mass goes
# to the escape. A symbol that lands there costs about 30 bits more than the model says, so
# the expected excess stays under about 0.003 bits per symbol, while unused broad components
# no longer widen every table to the whole alphabet.
TAIL = 12.0
MIN_WEIGHT = 1e-4
# Scales from e^-4 (a near-certain symbol) to e^7 (about 1100 levels wide).
LOG_SCALE_MIN = -4.0
LOG_SCALE_MAX = 7.0


def split_params(params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(..., 3K)`` -> mixture log-weights, means, log-scales, each ``(..., K)``."""
    k = params.shape[-1] // 3
    logits, mu, log_s = params[..., :k], params[..., k:2 * k], params[..., 2 * k:]
    log_s = log_s.clamp(LOG_SCALE_MIN, LOG_SCALE_MAX)
    return F.log_softmax(logits, dim=-1), mu, log_s


def _log_bin_mass(z: Tensor, mu: Tensor, log_s: Tensor) -> Tensor:
    """``log(sig(a) - sig(b))`` with ``a = (z + 1/2 - mu) / s``, ``b = a - 1/s``.

    Written as ``log sig(a) + log sig(-b) + log(1 - e^(b - a))``, which stays finite far in
    either tail (where both sigmoids round to 0 or to 1).
    """
    inv_s = torch.exp(-log_s)
    a = (z + 0.5 - mu) * inv_s
    b = a - inv_s
    return F.logsigmoid(a) + F.logsigmoid(-b) + torch.log(-torch.expm1(-inv_s))


def log_prob(z: Tensor, params: Tensor) -> Tensor:
    """Natural log-probability of integer-valued ``z`` ``(...)`` under ``params``
    ``(..., 3K)``; differentiable in both."""
    log_w, mu, log_s = split_params(params)
    return torch.logsumexp(log_w + _log_bin_mass(z.unsqueeze(-1), mu, log_s), dim=-1)


@torch.no_grad()
def sample(params: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Integer-valued draws ``(...)`` from ``params`` ``(..., 3K)`` (float, integral values)."""
    log_w, mu, log_s = split_params(params.float())
    k = torch.distributions.Categorical(logits=log_w).sample()
    pick = k.unsqueeze(-1)
    mu, log_s = mu.gather(-1, pick).squeeze(-1), log_s.gather(-1, pick).squeeze(-1)
    u = torch.rand(mu.shape, generator=generator, device=mu.device).clamp(1e-6, 1 - 1e-6)
    return torch.round(mu + torch.exp(log_s) * (torch.log(u) - torch.log1p(-u)))


def windows(params: Tensor, bounds: tuple[int, int], tail: float = TAIL,
            min_weight: float = MIN_WEIGHT) -> tuple[Tensor, Tensor]:
    """Per symbol, the lowest symbol ``(N,)`` int64 and the count ``(N,)`` int64 of the
    symbols worth a table entry: ``tail`` scales either side of every component whose weight
    is at least ``min_weight``, within ``bounds`` (lowest, highest). Float64, elementwise."""
    log_w, mu, log_s = split_params(params.double())
    spread = tail * torch.exp(log_s)
    keep = (log_w >= math.log(min_weight)) | (log_w == log_w.max(-1, keepdim=True).values)
    lo = torch.where(keep, mu - spread, torch.inf).amin(-1)
    hi = torch.where(keep, mu + spread, -torch.inf).amax(-1)
    low = torch.floor(lo + 0.5).clamp(*bounds)
    high = torch.ceil(hi - 0.5).clamp(*bounds)
    return low.to(torch.int64), (high - low + 1).clamp(min=1).to(torch.int64)


def probability_table(params: Tensor, low: Tensor, size: int) -> Tensor:
    """Probabilities ``(N, size + 1)`` float64: column ``j`` of row ``n`` is symbol
    ``low[n] + j``, the last column "anything else" (the escape), for ``params`` ``(N, 3K)``.

    Elementwise arithmetic and a sum over the K components in a fixed order: the same
    parameters give the same table bit for bit. Rows need not sum to one exactly: the coder
    normalises and quantizes them itself.
    """
    log_w, mu, log_s = split_params(params.double())
    edges = low.double()[:, None] + (torch.arange(size + 1, dtype=torch.float64,
                                                  device=params.device) - 0.5)
    w, inv_s = torch.exp(log_w), torch.exp(-log_s)
    inside = torch.zeros(len(edges), size, dtype=torch.float64, device=params.device)
    outside = torch.zeros(len(edges), dtype=torch.float64, device=params.device)
    for k in range(mu.shape[-1]):  # components one by one, always in this order
        cdf = torch.sigmoid((edges - mu[:, k, None]) * inv_s[:, k, None])
        inside += (cdf[:, 1:] - cdf[:, :-1]) * w[:, k, None]
        outside += (cdf[:, 0] + (1.0 - cdf[:, -1])) * w[:, k]
    return torch.cat([inside, outside[:, None]], dim=1)
