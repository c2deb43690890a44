"""Lossless compression (``--task codec``): an integer discrete flow trained for code length.

The loss is the model's cross-entropy in bits/dim, ``-log2 P(x) / D``, where ``P`` is the
exact discrete probability of the integer image (no dequantization: the flow maps integers
to integers). It is the size an ideal entropy coder achieves, and what ``invertible
compress`` then realises with an ANS coder (``invertible.codec``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from ...codec import prior
from ...codec.integer_flow import IntegerFlow
from ..plots import save_image_grid
from .base import SAMPLE_SEED, DataSpec, Objective, TaskError, seeded_samples

__all__ = ["CodecObjective"]


class CodecObjective(Objective):
    """An ``IntegerFlow`` trained by maximum likelihood on integer images;
    ``forward`` gives ``{"loss", "bpd"}`` ``(B,)``, both the cross-entropy in bits/dim."""

    task: ClassVar[str] = "codec"
    monitor: ClassVar[str] = "bpd"
    monitor_label: ClassVar[str] = "bits/dim"
    progress_metrics: ClassVar[tuple[str, ...]] = ("bpd",)
    #: What ``invertible evaluate`` says the figure is of.
    evaluation_note: ClassVar[str] = "the integer pixels themselves, no dequantization"

    def __init__(self, flow: IntegerFlow, data: DataSpec) -> None:
        super().__init__(data)
        if data.kind != "image" or data.n_bins is None:
            raise TaskError("the codec task needs image data")
        if tuple(flow.shape) != tuple(data.shape) or flow.n_bins != data.n_bins:
            raise TaskError(f"the integer flow takes {flow.shape} images of {flow.n_bins} "
                            f"levels, the data is {data.shape} with {data.n_bins}")
        self.flow = flow

    def metric_names(self) -> list[str]:
        return ["loss", "bpd"]

    def forward(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        bpd = -self.flow.log_prob(x) / (self.dims * math.log(2.0))
        return {"loss": bpd, "bpd": bpd}

    def describe(self, metrics: dict[str, float], split: str) -> list[str]:
        n = int(metrics["n"])
        ci = 1.96 * metrics["bpd_std"] / math.sqrt(max(n, 1))
        return [(f"{split} bits/dim (the model's cross-entropy: the ideal code length): "
                f"{metrics['bpd']:.4f} ± {ci:.4f} (95% CI over {n} examples)")]

    @torch.no_grad()
    def diagnostics(self, split: Any, batch_size: int) -> dict[str, float]:
        """How many images ``inverse(forward(x))`` returns exactly (it must be all)."""
        was = self.training
        self.eval()
        exact = 0
        for start in range(0, len(split), batch_size):
            x, _ = split.batch(torch.arange(start, min(start + batch_size, len(split))),
                               self.device)
            back = self.flow.inverse(self.flow(x)[0])
            exact += int((back == x.to(back.dtype)).flatten(1).all(1).sum())
        self.train(was)
        return {"exact": float(exact), "n": float(len(split))}

    def describe_diagnostics(self, extra: dict[str, float]) -> list[str]:
        return [(f"exact round trips (integer latents back to the very pixels): "
                f"{int(extra['exact'])} of {int(extra['n'])}")]

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> Tensor:
        """Draws from the prior, decoded top-down; ``temperature`` scales every logistic."""
        shift = torch.zeros(3 * self.flow.components, device=self.device)
        shift[2 * self.flow.components:] = math.log(max(temperature, 1e-3))

        def draw(_: int, params: Tensor) -> Tensor:
            return prior.sample(params + shift)

        x = self.flow.decode(n, draw)
        assert self.n_bins is not None
        return x.clamp(0, self.n_bins - 1).to(torch.uint8).cpu()

    def write_artifacts(self, folder: Path, name: str, n: int,
                        preview: Any = None) -> list[Path]:
        x = seeded_samples(self, n, 1.0, SAMPLE_SEED).numpy()
        path = folder / "samples" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        assert self.n_bins is not None
        return [save_image_grid(x, self.n_bins, path)]
