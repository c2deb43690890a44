"""Utility of released or synthetic data: classifiers trained on it, tested on real data.

Two scikit-learn classifiers, each on standardised inputs: logistic regression and a small
MLP (one hidden layer of 256). ``classifier_accuracy`` trains both on one set of features and
reports their test accuracy; ``synthetic_samples`` draws class-balanced samples from a
class-conditional flow under a fixed seed.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["CLASSIFIERS", "classifier_accuracy", "synthetic_samples"]

CLASSIFIERS = ("logistic regression", "MLP (256)")


def _make(name: str, seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == CLASSIFIERS[0]:
        clf: Any = LogisticRegression(max_iter=300)
    else:
        clf = MLPClassifier(hidden_layer_sizes=(256,), max_iter=60, random_state=seed)
    return make_pipeline(StandardScaler(), clf)


def classifier_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                        test_y: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Test accuracy of each classifier in ``CLASSIFIERS`` trained on ``(train_x, train_y)``
    (features flattened; non-finite values set to 0)."""
    from sklearn.exceptions import ConvergenceWarning

    def flat(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
        return np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)

    xtr, xte = flat(train_x), flat(test_x)
    out = {}
    for name in CLASSIFIERS:
        if len(np.unique(train_y)) < 2:
            out[name] = float("nan")
            continue
        model = _make(name, seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(xtr, np.asarray(train_y))
        out[name] = float(np.mean(model.predict(xte) == np.asarray(test_y)))
    return out


@torch.no_grad()
def synthetic_samples(objective: Any, n: int, seed: int = 4321,
                      batch_size: int = 500) -> tuple[Tensor, Tensor]:
    """``n`` samples (levels) of a class-conditional flow, balanced over its classes
    (``balanced_labels``), drawn in batches under the fixed ``seed``; returns
    ``(levels, labels)``."""
    from ..training.objectives import fixed_rng
    from ..training.objectives.density import balanced_labels

    labels = balanced_labels(n, objective.context_classes)
    was = objective.training
    objective.eval()
    parts = []
    try:
        with fixed_rng(seed, objective.device):
            for s in range(0, n, batch_size):
                parts.append(objective.sample_class(labels[s : s + batch_size]))
    finally:
        objective.train(was)
    return torch.cat(parts), labels
