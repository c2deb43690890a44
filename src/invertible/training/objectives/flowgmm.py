"""A flow that classifies (FlowGMM, Izmailov et al., 2020): ``--task classify`` with a flow.

The flow's latent prior is ``ClassGaussianMixture``: one Gaussian ``N(mu_k, I)`` per class.
For images ``x`` with labels ``y`` (dequantized to ``u``, latent ``z = f(u)``):

- ``loss``: bits/dim of the pair, ``-log p(x, y) = -(log N(z; mu_y, I) + log(1/K) +
  log|det df/du| - D log n_bins - log q(noise))``, in bits per dimension;
- ``bpd``: bits/dim of the image alone, the same with a log-sum-exp over the classes;
- ``error``: the Bayes classifier ``argmax_k p(k | x)`` in latent space is wrong.

The loss is ``loss`` plus, with ``w_class > 0``, ``w_class * (-log p(y | x)) / (D ln 2)``:
the pair's likelihood already holds one ``-log p(y | x)``; more weight on it trades bits/dim
for accuracy (a hybrid objective). ``w_class = 0`` (default) is FlowGMM as published.

The same model gives test bits/dim and accuracy, and samples a chosen class
(``sample_class``). The class posterior is ``softmax_k(log N(z; mu_k, I))``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from ...distributions import ClassGaussianMixture, Flow
from ..plots import save_image_grid
from .base import SAMPLE_SEED, DataSpec, TaskError, seeded_samples
from .classify import accuracy_lines, check_labels, labelled_spec
from .density import DensityObjective

__all__ = ["FlowGMMObjective"]


class FlowGMMObjective(DensityObjective):
    """A ``Flow`` with a ``ClassGaussianMixture`` base, trained on ``-log p(x, y)``."""

    task: ClassVar[str] = "classify"
    monitor: ClassVar[str] = "loss"
    monitor_label: ClassVar[str] = "loss (bits/dim of (image, label))"
    progress_metrics: ClassVar[tuple[str, ...]] = ("bpd", "error")

    def __init__(self, flow: Flow, data: DataSpec, dequant: str = "uniform",
                 w_class: float = 0.0) -> None:
        self.n_classes = labelled_spec(data, "a flow classifier")
        if not isinstance(flow.base, ClassGaussianMixture):
            raise TaskError("a flow classifier needs a ClassGaussianMixture base")
        if isinstance(w_class, bool) or not isinstance(w_class, int | float) or not (
                0 <= w_class < math.inf):
            raise TaskError(f"task option w_class must be a number >= 0, got {w_class!r}")
        super().__init__(flow, data, dequant)
        self.prior: ClassGaussianMixture = flow.base
        self.w_class = float(w_class)

    def metric_names(self) -> list[str]:
        return ["loss", "pair_bpd", "bpd", "error"]

    def _joint(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(log p(x, k)`` per class ``(B, K)`` in nats of the discrete data, and the
        per-sample constant that turns it into bits/dim ``(B,)``)."""
        assert self.dequant is not None and self.n_bins is not None
        u, log_q = self.dequant(x)
        z, logdet = self.flow.bijection(u)
        if z.dtype in (torch.bfloat16, torch.float16):
            z = z.float()
        offset = logdet - self.dims * math.log(self.n_bins) - log_q
        return self.prior.class_log_probs(z) + offset.unsqueeze(1), offset

    def forward(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        labels = check_labels(y)
        joint, _ = self._joint(x)
        to_bits = -1.0 / (self.dims * math.log(2.0))
        pair = joint.gather(1, labels.unsqueeze(1)).squeeze(1) * to_bits
        marginal = torch.logsumexp(joint, dim=1) * to_bits
        wrong = (joint.argmax(dim=1) != labels).to(joint.dtype)
        # pair - marginal = -log p(y | x) in bits/dim.
        loss = pair + self.w_class * (pair - marginal) if self.w_class else pair
        return {"loss": loss, "pair_bpd": pair, "bpd": marginal, "error": wrong}

    @torch.no_grad()
    def class_posterior(self, levels: Tensor) -> Tensor:
        """``p(k | x)`` ``(B, K)`` of images (integer levels), at their bin centres."""
        z, _ = self.flow.bijection(self.center(levels.to(self.device)))
        return torch.softmax(self.prior.class_log_probs(z.float()), dim=1)

    def describe(self, metrics: dict[str, float], split: str) -> list[str]:
        n = int(metrics["n"])
        ci = 1.96 * metrics["bpd_std"] / math.sqrt(max(n, 1))
        return [*accuracy_lines(metrics, split),
                (f"{split} bits/dim: {metrics['bpd']:.4f} ± {ci:.4f} (95% CI over {n} "
                 f"examples; with the label: {metrics['pair_bpd']:.4f})")]

    # -- generation ---------------------------------------------------------------------------
    @torch.no_grad()
    def sample_class(self, labels: Tensor, temperature: float = 1.0) -> Tensor:
        """Images (integer levels) of the given classes ``(n,)``."""
        labels = torch.as_tensor(labels).long().reshape(-1)
        z = self.prior.sample(len(labels), temperature, labels.to(self.device))
        return self.to_levels(self.flow.bijection.inverse(z)[0]).cpu()

    @torch.no_grad()
    def round_trip(self, x: Tensor) -> Tensor:
        """Images ``x`` in [0, 1] -> latent -> images."""
        bij = self.flow.bijection
        return bij.inverse(bij(x)[0])[0]

    def write_artifacts(self, folder: Path, name: str, n: int,
                        preview: Any = None) -> list[Path]:
        """Samples, one row per class."""
        per_class = max(1, n // self.n_classes)
        labels = torch.arange(self.n_classes).repeat_interleave(per_class)
        x = seeded_samples(self, len(labels), 1.0, SAMPLE_SEED, labels).numpy()
        path = folder / "samples" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        assert self.n_bins is not None
        return [save_image_grid(x, self.n_bins, path, nrow=per_class)]
