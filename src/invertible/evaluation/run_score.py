"""The sample-quality score of a trained run: its samples and real test images through one
classifier trained on the run's real training split (what ``evaluate`` and ``train`` print).

Samples (``Objective.sample``) and a split's images are both integer levels
``0..n_bins - 1``; ``to_unit`` maps both to ``level / (n_bins - 1)``, so the classifier
sees them on one scale.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..training.datasets import Split
from ..training.objectives.base import SAMPLE_SEED, Objective, TaskError, seeded_samples
from .sample_score import SampleScore, sample_score
from .score_classifier import TrainedClassifier, load_or_train_classifier, to_unit

__all__ = ["RunScore", "sample_levels", "score_or_reason", "score_run", "unscorable_reason"]

# Samples are drawn in chunks of this many (memory), chunk i under seed + i.
_CHUNK = 250


@dataclass(frozen=True)
class RunScore:
    """The score of ``samples`` and of ``real`` test images by ``classifier``."""

    samples: SampleScore
    real: SampleScore
    classifier: TrainedClassifier

    @property
    def ratio(self) -> float:
        """Samples' mean max probability over the real images' (1 = as confident as on
        real data)."""
        return self.samples.mean_max_prob / self.real.mean_max_prob

    def lines(self) -> list[str]:
        """The human-readable report (a header and three indented lines)."""
        c = self.classifier
        where = f"cached in {c.path}" if c.path is not None else "not cached"
        head = (f"sample quality (classifier trained on the real train split, "
                f"{100 * c.test_accuracy:.1f}% test accuracy; {where}):")

        def row(label: str, s: SampleScore) -> str:
            return (f"  {label + ':':<18} mean max prob {s.mean_max_prob:.3f}, label entropy "
                    f"{s.label_entropy:.2f} / {s.max_entropy:.2f} bits, IS "
                    f"{s.inception_score:.1f}")

        return [head, row(f"{self.samples.n} samples", self.samples),
                row(f"{self.real.n} real test", self.real),
                f"  samples / real mean max prob: {100 * self.ratio:.0f}%"]

    def as_dict(self) -> dict[str, object]:
        """The figures as JSON-ready values."""
        c = self.classifier
        return {"classifier_test_accuracy": c.test_accuracy,
                "classifier_path": None if c.path is None else str(c.path),
                "samples": self.samples.as_dict(), "real": self.real.as_dict(),
                "mean_max_prob_ratio": self.ratio}


def unscorable_reason(objective: Objective, private: bool = False) -> str | None:
    """Why a run's ``objective`` cannot be scored (vector data, data without class labels, a
    task that cannot sample, a differentially ``private`` run), or None when it can."""
    if objective.kind != "image":
        return "the data are vectors, not images"
    if (objective.data.n_classes or 0) < 2:
        return "the dataset has no class labels"
    if type(objective).sample is Objective.sample:
        return f"a '{objective.task}' run cannot generate samples"
    if private:
        # The classifier would see the private training split without any guarantee, and
        # its cache would sit in the run folder, which is what a DP run releases.
        return "a differentially private run (the classifier would not be private)"
    return None


def sample_levels(objective: Objective, n: int, seed: int = SAMPLE_SEED) -> Tensor:
    """``n`` samples of ``objective`` at temperature 1 as levels ``(n, C, H, W)`` (CPU), in
    eval mode, deterministic for a given ``seed`` (chunks of 250, chunk i under seed + i)."""
    parts = [seeded_samples(objective, min(_CHUNK, n - start), 1.0, seed + i)
             for i, start in enumerate(range(0, n, _CHUNK))]
    return torch.cat(parts)


def score_run(objective: Objective, train: Split, test: Split,
              cache: str | os.PathLike | None, n: int = 1000, seed: int = SAMPLE_SEED,
              warn: Callable[[str], None] | None = None) -> RunScore:
    """Score ``n`` samples of ``objective`` (with the weights it holds) and the first ``n``
    images of ``test`` with the classifier cached at ``cache`` (trained on ``train`` when the
    cache is missing or unusable, see ``load_or_train_classifier``).

    Raises ``TaskError`` when the run cannot be scored (``unscorable_reason``).
    """
    reason = unscorable_reason(objective)
    if reason is None and (train.n_classes or 0) < 2:
        reason = "the training split has no class labels"
    if reason is not None:
        raise TaskError(f"no sample-quality score: {reason}")
    if n < 1:
        raise ValueError(f"the sample score needs n >= 1 samples, got {n}")
    assert train.n_bins is not None
    trained = load_or_train_classifier(cache, train, test, device=objective.device, warn=warn)
    samples = sample_levels(objective, n, seed)
    real = test.x[:n]
    probs = trained.model.probabilities
    return RunScore(sample_score(probs(to_unit(samples, train.n_bins))),
                    sample_score(probs(to_unit(real, train.n_bins))), trained)


def score_or_reason(objective: Objective, private: bool,
                    splits: Callable[[], tuple[Split, Split]],
                    cache: str | os.PathLike | None, n: int = 1000,
                    warn: Callable[[str], None] | None = None) -> RunScore | str:
    """``score_run`` of a run, or the one line saying why it has no score
    (``unscorable_reason``). ``splits()`` gives (train, test) and is called only when the
    run can be scored, so callers that must load them pay nothing otherwise."""
    reason = unscorable_reason(objective, private=private)
    if reason is not None:
        return f"(no sample-quality score: {reason})"
    train, test = splits()
    return score_run(objective, train, test, cache, n, warn=warn)
