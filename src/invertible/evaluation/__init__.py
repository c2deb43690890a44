"""Evaluation beyond a task's own figures: the sample-quality score of image samples.

A small CNN (``ScoreClassifier``) trained on a run's real training split classifies ``n``
samples and ``n`` real test images; ``sample_score`` turns class probabilities ``(N, K)``
into a ``SampleScore`` (mean max probability, label entropy, Inception Score), and
``score_run`` does both for a run, caching the classifier in the run folder and in the
user's cache (``shared_stem``: one per training split).
"""

from .run_score import RunScore, sample_levels, score_or_reason, score_run, unscorable_reason
from .sample_score import SampleScore, sample_score
from .score_classifier import (
    CACHE_NAME,
    SCORE_FORMAT,
    ScoreClassifier,
    TrainedClassifier,
    cache_stem,
    load_or_train_classifier,
    shared_stem,
    to_unit,
    train_score_classifier,
)

__all__ = [
    "CACHE_NAME",
    "SCORE_FORMAT",
    "RunScore",
    "SampleScore",
    "ScoreClassifier",
    "TrainedClassifier",
    "cache_stem",
    "load_or_train_classifier",
    "sample_levels",
    "sample_score",
    "score_or_reason",
    "score_run",
    "shared_stem",
    "to_unit",
    "train_score_classifier",
    "unscorable_reason",
]
