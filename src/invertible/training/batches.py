"""Datasets as in-memory tensors for training, and the training objective in bits/dim.

Images stay as integer levels (uint8) until a batch is drawn; the objective dequantizes
them, so the bits/dim figure counts the data's own number of levels (17 for digits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..distributions import Flow

__all__ = ["Objective", "Split", "UniformNoise", "load_split", "make_dequantizer"]


@dataclass
class Split:
    """One split held in memory. ``x``: uint8 levels ``(N, C, H, W)`` or float32 ``(N, D)``."""

    kind: str  # "image" or "vector"
    x: Tensor
    n_bins: int | None
    name: str

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.x.shape[1:])

    @property
    def dims(self) -> int:
        return math.prod(self.shape)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def info(self) -> dict[str, Any]:
        return {"kind": self.kind, "shape": list(self.shape), "n_bins": self.n_bins,
                "name": self.name}


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
                     obj.name)
    return Split("vector", torch.as_tensor(obj.data, dtype=torch.float32), None, obj.name)


class UniformNoise(nn.Module):
    """``levels -> ((k + u) / n_bins, log_q = 0)`` with ``u ~ U[0, 1)`` (or fixed ``u``)."""

    def __init__(self, n_bins: int) -> None:
        super().__init__()
        self.n_bins = int(n_bins)

    def forward(self, levels: Tensor) -> tuple[Tensor, Tensor]:
        k = levels.float()
        return (k + torch.rand_like(k)) / self.n_bins, k.new_zeros(k.shape[0])


def make_dequantizer(kind: str, shape: tuple[int, ...], n_bins: int) -> nn.Module:
    """The dequantizer ``levels (float) -> (y in [0,1), log_q (B,))`` named by ``kind``."""
    try:
        from ..layers import preprocessing as pre
    except ImportError:  # pragma: no cover - the layer module always ships
        pre = None
    if kind == "uniform":
        cls = getattr(pre, "UniformDequantization", None)
        return cls(n_bins) if cls is not None else UniformNoise(n_bins)
    if kind == "variational":
        cls = getattr(pre, "VariationalDequantization", None)
        if cls is None:
            raise ValueError("variational dequantization is not available in this build")
        return cls(shape, n_bins)
    raise ValueError(f"unknown dequantization '{kind}'")


class Objective(nn.Module):
    """The training loss: a batch -> per-sample bits/dim ``(B,)``.

    Images (integer levels): ``-(log p(y) - D log n_bins - log q(y|k)) / (D ln 2)`` with
    ``y`` from the dequantizer, an upper bound on the discrete bits/dim. Vectors: the
    differential ``-log p(x) / (D ln 2)``. DDP wraps this module, so the dequantizer's
    parameters (variational) are averaged like the flow's.
    """

    def __init__(self, flow: Flow, kind: str, shape: tuple[int, ...], n_bins: int | None,
                 dequant: str = "uniform") -> None:
        super().__init__()
        self.flow = flow
        self.kind = kind
        self.shape = tuple(shape)
        self.n_bins = n_bins
        self.dims = math.prod(self.shape)
        self.dequant = make_dequantizer(dequant, self.shape, n_bins) if kind == "image" else None

    def dequantize(self, batch: Tensor) -> tuple[Tensor, Tensor]:
        dtype = next(self.flow.parameters(), torch.empty(0)).dtype
        if self.kind != "image":
            x = batch.to(dtype)
            return x, x.new_zeros(x.shape[0])
        assert self.dequant is not None
        y, log_q = self.dequant(batch)  # integer levels in, y in [0, 1) out
        return y.to(dtype), log_q.to(dtype)

    def forward(self, batch: Tensor) -> Tensor:
        y, log_q = self.dequantize(batch)
        log_p = self.flow.log_prob(y)
        if self.kind == "image":
            log_p = log_p - self.dims * math.log(self.n_bins) - log_q
        return -log_p / (self.dims * math.log(2.0))

    def to_levels(self, x: Tensor) -> Tensor:
        """Model-space images in [0, 1] -> integer levels (uint8), non-finite values -> 0."""
        x = torch.nan_to_num(x.float(), nan=0.0, posinf=1.0, neginf=0.0)
        return torch.clamp(torch.floor(x * self.n_bins), 0, self.n_bins - 1).to(torch.uint8)

    def center(self, levels: Tensor) -> Tensor:
        """Integer levels -> bin centres ``(k + 0.5) / n_bins``: the noise-free encoding."""
        dtype = next(self.flow.parameters(), torch.empty(0)).dtype
        return (levels.to(dtype) + 0.5) / self.n_bins
