"""Maximum likelihood for flows (``--task density``): the loss is bits per dimension.

Images (integer levels ``k``): a dequantizer draws ``y = (k + u) / n_bins`` and the loss is
``-(log p(y) - D log n_bins - log q(u | k)) / (D ln 2)``, an upper bound on the discrete
bits/dim. Vectors: the differential ``-log p(x) / (D ln 2)``.

Conditional (``train --conditional``): the flow models ``p(x | y)`` with the one-hot class
label ``y`` as its context, and every figure is of ``x`` given its label.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from ...core import apply_layer
from ...distributions import Flow
from ...layers.dequantization import make_dequantizer
from ..plots import save_image_grid, save_scatter
from .base import SAMPLE_SEED, DataSpec, Objective, TaskError, seeded_samples
from .inversion import round_trip_errors

__all__ = ["DensityObjective", "balanced_labels", "round_trip_error"]


def balanced_labels(n: int, n_classes: int) -> Tensor:
    """``(n,)`` class indices in class order, each class ``n // K`` or ``n // K + 1`` times
    (exactly ``n / K`` when it divides: then a grid of ``n / K`` columns has row k = class k)."""
    return torch.arange(n) * n_classes // n


class DensityObjective(Objective):
    """A flow trained by maximum likelihood; ``forward`` gives ``{"loss", "bpd"}`` ``(B,)``.

    DDP wraps this module, so a variational dequantizer's parameters are averaged like the
    flow's. ``conditional=True``: the flow is conditional and gets the one-hot label
    ``(B, n_classes)`` of each example as its context (labelled data only).
    """

    task: ClassVar[str] = "density"
    monitor: ClassVar[str] = "bpd"
    monitor_label: ClassVar[str] = "bits/dim"
    progress_metrics: ClassVar[tuple[str, ...]] = ("bpd",)

    def __init__(self, flow: Flow, data: DataSpec, dequant: str = "uniform",
                 conditional: bool = False) -> None:
        super().__init__(data)
        if conditional and (not data.n_classes or data.n_classes < 2):
            raise TaskError("--conditional needs labelled data with at least 2 classes; this "
                            "dataset has no class labels")
        if flow.conditional != conditional:
            raise TaskError("a conditional density task needs a conditional flow"
                            if conditional else
                            "the flow is conditional: train it with --conditional (labels)")
        self.flow = flow
        # Classes whose one-hot label is the flow's context; 0 when unconditional.
        self.context_classes = int(data.n_classes or 0) if conditional else 0
        self.dequant = (make_dequantizer(dequant, self.shape, data.n_bins or 0)
                        if self.kind == "image" else None)

    @property
    def conditional(self) -> bool:
        """Whether the flow models ``p(x | label)``."""
        return self.context_classes > 0

    def context(self, y: Tensor | None) -> Tensor | None:
        """Labels ``(B,)`` -> the flow's one-hot context ``(B, K)``; None when unconditional."""
        if not self.conditional:
            return None
        if y is None:
            raise TaskError("a conditional density run needs labelled data (these rows have "
                            "no labels)")
        # Not F.one_hot: it reads the largest label on the host, which per-sample gradients
        # (torch.func.vmap, DP training) cannot do.
        classes = torch.arange(self.context_classes, device=y.device)
        return (y.long()[:, None] == classes).to(self.dtype)

    def metric_names(self) -> list[str]:
        return ["loss", "bpd"]

    def bits_per_dim(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Per-sample bits/dim ``(B,)`` of levels ``(B, C, H, W)`` or vectors ``(B, D)``,
        given ``context`` ``(B, K)`` when the flow is conditional."""
        if self.dequant is None:
            log_p = self.flow.log_prob(x.to(self.dtype), context)
            return -log_p / (self.dims * math.log(2.0))
        return self.dequant.bits_per_dim(self.flow, x, context)

    def forward(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        bpd = self.bits_per_dim(x, self.context(y))
        return {"loss": bpd, "bpd": bpd}

    def describe(self, metrics: dict[str, float], split: str) -> list[str]:
        n = int(metrics["n"])
        ci = 1.96 * metrics["bpd_std"] / math.sqrt(max(n, 1))
        what = "conditional bits/dim (of x given its label)" if self.conditional else "bits/dim"
        return [f"{split} {what}: {metrics['bpd']:.4f} ± {ci:.4f} (95% CI over {n} examples)"]

    def diagnostics(self, split: Any, batch_size: int) -> dict[str, float]:
        err_max, err_mean = round_trip_error(self, split, batch_size)
        return {"round_trip_max": err_max, "round_trip_mean": err_mean}

    def describe_diagnostics(self, extra: dict[str, float]) -> list[str]:
        line = (f"round-trip relative error |inverse(forward(x)) - x| / |x|: max "
                f"{extra['round_trip_max']:.2e}, mean {extra['round_trip_mean']:.2e}")
        return [line]

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> Tensor:
        """``n`` samples; from a conditional flow, of every class in turn (``balanced_labels``)."""
        if self.conditional:
            return self.sample_class(balanced_labels(n, self.context_classes), temperature)
        return self._output(self.flow.sample(n, temperature))

    @torch.no_grad()
    def sample_class(self, labels: Tensor, temperature: float = 1.0) -> Tensor:
        """Samples of the given classes ``(n,)``, from a conditional flow."""
        if not self.conditional:
            raise TaskError("this run is not conditional: a chosen class needs a run trained "
                            "with --conditional, or a flow classifier (--task classify)")
        labels = torch.as_tensor(labels).long().reshape(-1)
        k = self.context_classes
        bad = labels[(labels < 0) | (labels >= k)]
        if len(bad):
            raise TaskError(f"label {int(bad[0])} is out of range: this run's classes are "
                            f"0..{k - 1}")
        c = self.context(labels.to(self.device))
        return self._output(self.flow.sample(len(labels), temperature, context=c))

    def _output(self, x: Tensor) -> Tensor:
        return self.to_levels(x).cpu() if self.kind == "image" else x.float().cpu()

    def write_artifacts(self, folder: Path, name: str, n: int,
                        preview: Any = None) -> list[Path]:
        """Samples at T=1; for a conditional image run, a class grid (row k = class k)."""
        rows = self.context_classes if self.conditional and self.kind == "image" else 0
        if rows:
            n = max(1, n // rows) * rows  # whole rows, one class each
        x = seeded_samples(self, n, 1.0, SAMPLE_SEED).numpy()
        path = folder / "samples" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.kind == "image":
            assert self.n_bins is not None
            return [save_image_grid(x, self.n_bins, path, nrow=n // rows if rows else None)]
        return [save_scatter(x, path, title=f"{n} samples, T=1")]


def round_trip_error(objective: DensityObjective, split: Any,
                     batch_size: int) -> tuple[float, float]:
    """Max and mean of ``|inverse(forward(x)) - x| / |x|`` per example (x at bin centres)."""
    bij = objective.flow.bijection

    def prepare(rows: Tensor) -> Tensor:
        rows = rows.to(objective.device)
        return objective.center(rows) if objective.kind == "image" else rows.to(objective.dtype)

    if not objective.conditional:
        e = round_trip_errors(prepare, lambda x: bij.inverse(bij(x)[0])[0], split, batch_size)
        return float(e.max()), float(e.mean())

    def given_label(x: Tensor, y: Tensor) -> Tensor:
        # Each example round-trips given its own label.
        c = objective.context(y.to(objective.device))
        return apply_layer(bij, apply_layer(bij, x, c)[0], c, inverse=True)[0]

    e = round_trip_errors(prepare, given_label, split, batch_size, with_labels=True)
    return float(e.max()), float(e.mean())
