"""Maximum likelihood for flows (``--task density``): the loss is bits per dimension.

Images (integer levels ``k``): a dequantizer draws ``y = (k + u) / n_bins`` and the loss is
``-(log p(y) - D log n_bins - log q(u | k)) / (D ln 2)``, an upper bound on the discrete
bits/dim. Vectors: the differential ``-log p(x) / (D ln 2)``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from ...distributions import Flow
from ...layers.dequantization import make_dequantizer
from ..plots import save_image_grid, save_scatter
from .base import SAMPLE_SEED, DataSpec, Objective, seeded_samples
from .inversion import round_trip_errors

__all__ = ["DensityObjective", "round_trip_error"]


class DensityObjective(Objective):
    """A flow trained by maximum likelihood; ``forward`` gives ``{"loss", "bpd"}`` ``(B,)``.

    DDP wraps this module, so a variational dequantizer's parameters are averaged like the
    flow's.
    """

    task: ClassVar[str] = "density"
    monitor: ClassVar[str] = "bpd"
    monitor_label: ClassVar[str] = "bits/dim"
    progress_metrics: ClassVar[tuple[str, ...]] = ("bpd",)

    def __init__(self, flow: Flow, data: DataSpec, dequant: str = "uniform") -> None:
        super().__init__(data)
        self.flow = flow
        self.dequant = (make_dequantizer(dequant, self.shape, data.n_bins or 0)
                        if self.kind == "image" else None)

    def metric_names(self) -> list[str]:
        return ["loss", "bpd"]

    def bits_per_dim(self, x: Tensor) -> Tensor:
        """Per-sample bits/dim ``(B,)`` of levels ``(B, C, H, W)`` or vectors ``(B, D)``."""
        if self.dequant is None:
            return -self.flow.log_prob(x.to(self.dtype)) / (self.dims * math.log(2.0))
        return self.dequant.bits_per_dim(self.flow, x)

    def forward(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        bpd = self.bits_per_dim(x)
        return {"loss": bpd, "bpd": bpd}

    def describe(self, metrics: dict[str, float], split: str) -> list[str]:
        n = int(metrics["n"])
        ci = 1.96 * metrics["bpd_std"] / math.sqrt(max(n, 1))
        return [f"{split} bits/dim: {metrics['bpd']:.4f} ± {ci:.4f} (95% CI over {n} examples)"]

    def diagnostics(self, split: Any, batch_size: int) -> dict[str, float]:
        err_max, err_mean = round_trip_error(self, split, batch_size)
        return {"round_trip_max": err_max, "round_trip_mean": err_mean}

    def describe_diagnostics(self, extra: dict[str, float]) -> list[str]:
        line = (f"round-trip relative error |inverse(forward(x)) - x| / |x|: max "
                f"{extra['round_trip_max']:.2e}, mean {extra['round_trip_mean']:.2e}")
        return [line]

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> Tensor:
        x = self.flow.sample(n, temperature)
        return self.to_levels(x).cpu() if self.kind == "image" else x.float().cpu()

    def write_artifacts(self, folder: Path, name: str, n: int,
                        preview: Any = None) -> list[Path]:
        x = seeded_samples(self, n, 1.0, SAMPLE_SEED).numpy()
        path = folder / "samples" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.kind == "image":
            assert self.n_bins is not None
            return [save_image_grid(x, self.n_bins, path)]
        return [save_scatter(x, path, title=f"{n} samples, T=1")]


def round_trip_error(objective: DensityObjective, split: Any,
                     batch_size: int) -> tuple[float, float]:
    """Max and mean of ``|inverse(forward(x)) - x| / |x|`` per example (x at bin centres)."""
    bij = objective.flow.bijection

    def prepare(rows: Tensor) -> Tensor:
        rows = rows.to(objective.device)
        return objective.center(rows) if objective.kind == "image" else rows.to(objective.dtype)

    e = round_trip_errors(prepare, lambda x: bij.inverse(bij(x)[0])[0], split, batch_size)
    return float(e.max()), float(e.mean())
