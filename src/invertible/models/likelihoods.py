"""Observation models ``p(x | z)`` for the VAE's decoder, on images ``(B, C, H, W)``.

Each takes the decoder's raw output (``params_per_pixel * C`` channels) and gives a
per-image log-likelihood ``(B,)`` in nats, and the image its mean predicts in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core import sum_except_batch

__all__ = ["Bernoulli", "DiscretizedLogistic", "Likelihood", "make_likelihood"]

# Below this log-scale the logistic's bins stop resolving anything and the log-density
# saturates; PixelCNN++ uses the same floor.
_MIN_LOG_SCALE = -7.0


class Likelihood:
    """``log_prob(out, x) -> (B,)`` and ``mean(out) -> (B, C, H, W)`` in [0, 1]."""

    name: str = ""
    params_per_pixel: int = 1

    def log_prob(self, out: Tensor, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def mean(self, out: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class Bernoulli(Likelihood):
    """Binary pixels: ``out`` are logits ``(B, C, H, W)``; ``x`` is 0/1 floats."""

    name = "bernoulli"

    def log_prob(self, out: Tensor, x: Tensor) -> Tensor:
        return -sum_except_batch(F.binary_cross_entropy_with_logits(out, x, reduction="none"))

    def mean(self, out: Tensor) -> Tensor:
        return torch.sigmoid(out)


class DiscretizedLogistic(Likelihood):
    """Grey levels ``k`` in ``[0, n_bins - 1]`` (``x`` as integer-valued floats or ints).

    ``out`` is ``(B, 2C, H, W)``: a location ``mu`` and a log-scale per pixel, in the
    space ``y = 2k / (n_bins - 1) - 1`` in [-1, 1]. A level's probability is the logistic's
    mass on its bin ``y +- 1 / (n_bins - 1)``, with the two end bins reaching to infinity
    (PixelCNN++), so the levels' probabilities sum to one and ``-log p / (D ln 2)`` is a
    true discrete bits/dim, comparable with the flows' dequantized bound.
    """

    name = "logistic"
    params_per_pixel = 2

    def __init__(self, n_bins: int = 256) -> None:
        if n_bins < 2:
            raise ValueError(f"DiscretizedLogistic: n_bins must be >= 2, got {n_bins}")
        self.n_bins = n_bins

    def _split(self, out: Tensor) -> tuple[Tensor, Tensor]:
        mu, log_s = out.chunk(2, dim=1)
        return mu, log_s.clamp_min(_MIN_LOG_SCALE)

    def log_prob(self, out: Tensor, x: Tensor) -> Tensor:
        mu, log_s = self._split(out)
        k = x.to(out.dtype)
        half = 1.0 / (self.n_bins - 1)
        inv_s = torch.exp(-log_s)
        centred = 2 * k * half - 1 - mu
        plus, minus = (centred + half) * inv_s, (centred - half) * inv_s
        # sigmoid(a) - sigmoid(b) = sigmoid(a) sigmoid(-b) (1 - exp(b - a)): every factor's
        # log is finite and accurate, however narrow the bin is against the scale.
        inner = F.logsigmoid(plus) + F.logsigmoid(-minus) + torch.log(-torch.expm1(
            -2 * half * inv_s))
        first, last = F.logsigmoid(plus), F.logsigmoid(-minus)
        top = self.n_bins - 1
        lp = torch.where(k <= 0, first, torch.where(k >= top, last, inner))
        return sum_except_batch(lp)

    def mean(self, out: Tensor) -> Tensor:
        # The logistic's location is its mean (and mode); the end bins' tails are ignored.
        mu, _ = self._split(out)
        return ((mu + 1) / 2).clamp(0, 1)


def make_likelihood(name: str, n_bins: int | None) -> Likelihood:
    """``"bernoulli"`` (dynamically binarized data) or ``"logistic"`` (grey levels)."""
    if name == "bernoulli":
        return Bernoulli()
    if name == "logistic":
        return DiscretizedLogistic(n_bins or 256)
    raise ValueError(f"unknown likelihood '{name}' (choose bernoulli or logistic)")

