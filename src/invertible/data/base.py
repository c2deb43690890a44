"""Containers returned by the loaders, the user-facing error, and small array helpers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["DatasetError", "ImageData", "VectorData"]


class DatasetError(Exception):
    """A dataset cannot be loaded; the message is one line, meant for the user."""


@dataclass
class ImageData:
    """Quantized images.

    ``images``: uint8 ``(N, C, H, W)`` with integer levels ``0 .. n_bins - 1``;
    ``labels``: int64 ``(N,)`` or None; ``n_bins``: number of grey levels per channel
    (256 for 8-bit data, 17 for the scikit-learn digits), the figure bits/dim must use.
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    n_bins: int
    name: str
    split: str = "train"

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        _, c, h, w = self.images.shape
        return (int(c), int(h), int(w))

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass
class VectorData:
    """Continuous vectors: ``data`` is float32 ``(N, D)``."""

    data: torch.Tensor
    name: str
    split: str = "train"

    def __len__(self) -> int:
        return int(self.data.shape[0])


def parse_image_size(image_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    """Normalize ``image_size`` to ``(H, W)``; reject impossible values."""
    if image_size is None:
        return None
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        size = (int(image_size), int(image_size))
    elif (
        isinstance(image_size, (tuple, list))
        and len(image_size) == 2
        and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in image_size)
    ):
        size = (int(image_size[0]), int(image_size[1]))
    else:
        raise DatasetError(f"image_size must be an int or (height, width), got {image_size!r}")
    if not all(1 <= s <= 8192 for s in size):
        raise DatasetError(f"image_size must be between 1 and 8192 pixels, got {size}")
    return size


def to_grey(images: np.ndarray) -> np.ndarray:
    """``(N, 3, H, W)`` uint8 RGB -> ``(N, 1, H, W)`` luma (ITU-R 601-2, as Pillow's "L")."""
    rgb = images.astype(np.uint32)
    luma = (rgb[:, 0] * 19595 + rgb[:, 1] * 38470 + rgb[:, 2] * 7471 + 0x8000) >> 16
    return luma.astype(np.uint8)[:, None]


def set_channels(images: np.ndarray, grayscale: bool | None) -> np.ndarray:
    """Convert ``(N, C, H, W)`` uint8 images to 1 (grayscale) or 3 channels; None keeps C."""
    if grayscale is None:
        return images
    c = images.shape[1]
    if grayscale and c == 3:
        return to_grey(images)
    if not grayscale and c == 1:
        return np.repeat(images, 3, axis=1)
    return images


def resize_levels(images: np.ndarray, size: tuple[int, int] | None, n_bins: int) -> np.ndarray:
    """Resize quantized ``(N, C, H, W)`` images, keeping integer levels in ``0..n_bins-1``.

    Resizing changes the data: bits/dim on resized images is not comparable with published
    figures at the native size.
    """
    if size is None or tuple(images.shape[2:]) == size:
        return images
    x = torch.from_numpy(np.ascontiguousarray(images)).float()
    out = torch.nn.functional.interpolate(
        x, size=size, mode="bilinear", antialias=True, align_corners=False
    )
    out = out.round_().clamp_(0, n_bins - 1)
    return out.to(torch.uint8).numpy()


def make_image_data(
    images: np.ndarray,
    labels: np.ndarray | None,
    n_bins: int,
    name: str,
    split: str,
) -> ImageData:
    """Wrap validated arrays as an :class:`ImageData` (copies, so tensors are writable)."""
    img = torch.from_numpy(np.array(images, dtype=np.uint8, copy=True, order="C"))
    lab = None if labels is None else torch.from_numpy(np.asarray(labels, dtype=np.int64).copy())
    return ImageData(images=img, labels=lab, n_bins=n_bins, name=name, split=split)
