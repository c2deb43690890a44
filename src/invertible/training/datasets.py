"""Datasets held in memory as tensors for training: a ``Split`` per train/val/test.

Images stay as integer levels (uint8) until a batch is drawn; objectives turn them into
model inputs, so a figure such as bits/dim counts the data's own number of levels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["Split", "load_split"]


@dataclass
class Split:
    """One split held in memory.

    ``x``: uint8 levels ``(N, C, H, W)`` (images) or float32 ``(N, D)`` (vectors);
    ``y``: int64 class labels ``(N,)`` when the dataset has them, else None.
    """

    kind: str  # "image" or "vector"
    x: Tensor
    n_bins: int | None
    name: str
    y: Tensor | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.x.shape[1:])

    @property
    def dims(self) -> int:
        return math.prod(self.shape)

    @property
    def n_classes(self) -> int | None:
        return int(self.y.max()) + 1 if self.y is not None and len(self.y) else None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def batch(self, idx: Tensor, device: torch.device) -> tuple[Tensor, Tensor | None]:
        """Rows ``idx`` as ``(x, y)`` on ``device`` (``y`` None without labels)."""
        x = self.x[idx].to(device, non_blocking=True)
        y = self.y[idx].to(device, non_blocking=True) if self.y is not None else None
        return x, y

    def info(self) -> dict[str, Any]:
        """The data description a run folder records (what a model is built for)."""
        return {"kind": self.kind, "shape": list(self.shape), "n_bins": self.n_bins,
                "name": self.name, "n_classes": self.n_classes}


def load_split(cfg: Any, split: str, data_dir: str | None = None) -> Split:
    """Load ``split`` of the dataset named in ``cfg`` (a ``TrainConfig``) via ``invertible.data``."""
    from ..data import ImageData, load_dataset

    obj = load_dataset(
        cfg.data,
        data_dir if data_dir is not None else cfg.data_dir,
        split,
        download=cfg.download,
        val_fraction=cfg.val_fraction,
        seed=cfg.seed,
        image_size=cfg.image_size,
        grayscale=cfg.grayscale,
    )
    if isinstance(obj, ImageData):
        return Split("image", torch.as_tensor(obj.images, dtype=torch.uint8), int(obj.n_bins),
                     obj.name, obj.labels)
    return Split("vector", torch.as_tensor(obj.data, dtype=torch.float32), None, obj.name)
