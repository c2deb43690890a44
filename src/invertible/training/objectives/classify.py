"""Supervised classification (``--task classify``) with the Table 1 ladder (``--model convnet``).

The loss is the cross-entropy of the logits; ``error`` (1 - accuracy) picks the best
checkpoint. Images enter at their bin centres ``(k + 0.5) / n_bins`` (no dequantization
noise: a classifier has no density to bound). For the invertible ladder steps the run also
shows that the features keep everything: ``invert_images`` takes images to the final
feature map and back, and ``invertible evaluate`` prints the relative reconstruction error.
A flow classifier (FlowGMM) is the same task with a flow model; see ``flowgmm``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ...models.classifier import LadderConvNet
from ..plots import save_inversion
from .base import DataSpec, Objective, TaskError
from .inversion import relative_errors, round_trip_errors

if TYPE_CHECKING:
    from .flowgmm import FlowGMMObjective

__all__ = ["ClassifierObjective", "accuracy_lines", "check_labels"]

# Test images shown in a run folder's inversion figure.
INVERSION_PREVIEW = 6


def check_labels(y: Tensor | None) -> Tensor:
    """The batch's labels, or a ``TaskError`` when the data has none."""
    if y is None:
        raise TaskError("the classify task needs labelled data (this dataset has no labels)")
    return y.long()


def accuracy_lines(metrics: dict[str, float], split: str) -> list[str]:
    """``split accuracy: 99.12% ± 0.18% (95% CI over n examples)`` from ``evaluate``."""
    n = int(metrics["n"])
    acc = 1.0 - metrics["error"]
    ci = 1.96 * math.sqrt(max(acc * (1 - acc), 0.0) / max(n, 1))
    return [f"{split} accuracy: {100 * acc:.2f}% ± {100 * ci:.2f}% (95% CI over {n} examples)"]


def labelled_spec(data: DataSpec, what: str) -> int:
    """The number of classes of image data, or a ``TaskError`` naming ``what`` needs it."""
    if data.kind != "image" or data.n_bins is None:
        raise TaskError(f"{what} needs image data")
    if not data.n_classes or data.n_classes < 2:
        raise TaskError(f"{what} needs labelled data with at least 2 classes")
    return int(data.n_classes)


class ClassifierObjective(Objective):
    """A ``LadderConvNet`` trained by cross-entropy; ``forward`` gives ``{"loss", "error"}``."""

    task: ClassVar[str] = "classify"
    monitor: ClassVar[str] = "error"
    monitor_label: ClassVar[str] = "error rate"
    progress_metrics: ClassVar[tuple[str, ...]] = ("loss", "error")

    def __init__(self, model: LadderConvNet, data: DataSpec) -> None:
        super().__init__(data)
        self.n_classes = labelled_spec(data, "the classify task")
        if model.n_classes != self.n_classes:
            raise TaskError(f"the model has {model.n_classes} classes, the data "
                            f"{self.n_classes}")
        self.model = model

    def metric_names(self) -> list[str]:
        return ["loss", "error"]

    def forward(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        labels = check_labels(y)
        logits = self.model(self.center(x))
        wrong = (logits.argmax(dim=1) != labels).to(logits.dtype)
        return {"loss": F.cross_entropy(logits.float(), labels, reduction="none"),
                "error": wrong}

    def describe(self, metrics: dict[str, float], split: str) -> list[str]:
        return [*accuracy_lines(metrics, split),
                f"{split} cross-entropy: {metrics['loss']:.4f} nats"]

    # -- inversion ------------------------------------------------------------------------------
    @property
    def invertible(self) -> bool:
        return self.model.invertible

    @torch.no_grad()
    def round_trip(self, x: Tensor) -> Tensor:
        """Images ``x`` in [0, 1] -> final feature map -> images (``ModelError`` for a
        non-invertible ladder step)."""
        return self.model.invert(self.model.features(x))

    def diagnostics(self, split: Any, batch_size: int) -> dict[str, float]:
        if not self.invertible:
            return {}
        errs = round_trip_errors(lambda rows: self.center(rows.to(self.device)),
                                 self.round_trip, split, batch_size)
        return {"reconstruction_median": float(errs.median()),
                "reconstruction_max": float(errs.max()),
                "condition_number_max": max(self.model.condition_numbers())}

    def describe_diagnostics(self, extra: dict[str, float]) -> list[str]:
        if not extra:
            return [f"ladder step '{self.model.step}' is not invertible: no reconstruction"]
        return [(f"reconstruction from the features, relative error |x' - x| / |x|: median "
                 f"{extra['reconstruction_median']:.2e}, max {extra['reconstruction_max']:.2e}; "
                 f"worst convolution condition number {extra['condition_number_max']:.1f}")]

    def write_final(self, folder: Path, n: int, preview: Any = None) -> list[Path]:
        if not self.invertible or preview is None or not len(preview):
            return []
        levels = preview.x[:INVERSION_PREVIEW]
        return [write_inversion(self, levels, folder / "inversion.png")[0]]


def write_inversion(objective: ClassifierObjective | FlowGMMObjective, levels: Tensor,
                    path: Path) -> tuple[Path, Tensor]:
    """The original | reconstruction | difference figure of images (integer levels) through
    an invertible classifier's ``round_trip``, and their relative errors ``(B,)``."""
    x = objective.center(levels.to(objective.device))
    back = objective.round_trip(x)
    errs = relative_errors(back, x)
    title = f"features -> image, relative error max {float(errs.max()):.1e}"
    path = save_inversion(x.float().cpu().numpy(), back.float().cpu().numpy(), path, title)
    return path, errs
