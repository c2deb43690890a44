"""Membership inference on the model itself: the likelihood-threshold attack.

Score an example by the model's log-likelihood (minus its bits/dim, dequantization noise at a
fixed seed); call it a training member when the score is above a threshold. Over all
thresholds, the ROC curve of members (training examples) against non-members (held-out test
examples) gives the AUC (0.5: the model tells nothing) and the true-positive rate at a 1%
false-positive rate (what matters for a confident attacker).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["likelihood_scores", "mia_auc", "tpr_at_fpr"]


@torch.no_grad()
def likelihood_scores(objective: Any, x: Tensor, y: Tensor | None = None, seed: int = 1234,
                      batch_size: int = 256) -> np.ndarray:
    """Minus the per-example bits/dim ``(N,)`` (higher: more likely), from the objective's
    ``forward(x, y)["bpd"]`` (conditional runs: given the label), under a fixed seed."""
    from ..training.objectives import fixed_rng

    was = objective.training
    objective.eval()
    out = []
    try:
        with fixed_rng(seed, objective.device):
            for s in range(0, len(x), batch_size):
                xb = x[s : s + batch_size].to(objective.device)
                yb = y[s : s + batch_size].to(objective.device) if y is not None else None
                out.append(-objective(xb, yb)["bpd"].double().cpu())
    finally:
        objective.train(was)
    return torch.cat(out).numpy() if out else np.zeros(0)


def mia_auc(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> float:
    """ROC AUC of telling members (label 1) from non-members by the score (sklearn)."""
    from sklearn.metrics import roc_auc_score

    s, t = _scores_and_truth(member_scores, nonmember_scores)
    return float(roc_auc_score(t, s))


def tpr_at_fpr(member_scores: np.ndarray, nonmember_scores: np.ndarray,
               fpr: float = 0.01) -> float:
    """The largest true-positive rate whose false-positive rate is at most ``fpr``."""
    from sklearn.metrics import roc_curve

    s, t = _scores_and_truth(member_scores, nonmember_scores)
    f, r, _ = roc_curve(t, s)
    ok = f <= fpr + 1e-12
    return float(r[ok].max()) if ok.any() else 0.0


def _scores_and_truth(members: np.ndarray, nonmembers: np.ndarray) -> tuple[np.ndarray,
                                                                            np.ndarray]:
    m = np.asarray(members, dtype=np.float64).reshape(-1)
    n = np.asarray(nonmembers, dtype=np.float64).reshape(-1)
    if not len(m) or not len(n):
        raise ValueError("membership inference needs members and non-members")
    s = np.concatenate([m, n])
    # A non-finite likelihood is the least member-like score there is.
    s = np.nan_to_num(s, nan=-np.inf)
    s = np.where(np.isfinite(s), s, np.where(s > 0, np.finfo(float).max, -np.finfo(float).max))
    return s, np.concatenate([np.ones(len(m)), np.zeros(len(n))])
