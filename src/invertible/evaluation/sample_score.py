"""The sample-quality score of class probabilities (an Inception-Score-style measure)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["SampleScore", "sample_score"]


@dataclass(frozen=True)
class SampleScore:
    """Figures of ``n`` images' class probabilities over ``n_classes`` classes.

    ``mean_max_prob``: mean over images of ``max_k p(k | x)`` (confidence; 1 at best);
    ``label_entropy``: entropy in bits of the mean prediction ``p(y) = E_x p(y | x)``
    (diversity; at most ``max_entropy = log2 n_classes``); ``inception_score``:
    ``exp(E_x KL(p(y | x) || p(y)))``, between 1 and ``n_classes``.
    """

    n: int
    n_classes: int
    mean_max_prob: float
    label_entropy: float
    inception_score: float

    @property
    def max_entropy(self) -> float:
        """``log2 n_classes``: the label entropy of perfectly balanced predictions."""
        return math.log2(self.n_classes)

    def as_dict(self) -> dict[str, float]:
        """The figures as a JSON-ready dict."""
        return {"n": self.n, "mean_max_prob": self.mean_max_prob,
                "label_entropy": self.label_entropy, "max_entropy": self.max_entropy,
                "inception_score": self.inception_score}


def sample_score(probs: Tensor) -> SampleScore:
    """The ``SampleScore`` of class probabilities ``(N, K)`` (rows summing to 1, N >= 1)."""
    if probs.ndim != 2 or probs.shape[0] == 0 or probs.shape[1] < 2:
        raise ValueError(f"expected class probabilities (N >= 1, K >= 2), got shape "
                         f"{tuple(probs.shape)}")
    p = probs.double().clamp(min=0.0)
    p = p / p.sum(1, keepdim=True)
    marginal = p.mean(0)
    entropy = -torch.special.xlogy(marginal, marginal).sum() / math.log(2.0)
    # KL(p(y|x) || p(y)) per image; xlogy makes 0 log 0 = 0 (one-hot rows).
    kl = (torch.special.xlogy(p, p) - torch.special.xlogy(p, marginal.expand_as(p))).sum(1)
    return SampleScore(n=int(p.shape[0]), n_classes=int(p.shape[1]),
                       mean_max_prob=float(p.max(1).values.mean()),
                       label_entropy=float(entropy.clamp(min=0.0)),
                       inception_score=float(torch.exp(kl.mean())))
