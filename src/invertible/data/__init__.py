"""Datasets: quantized images (:class:`ImageData`) and toy vectors (:class:`VectorData`).

``load_dataset(name, root, split)`` is the one entry point. Every failure the user can
cause (unknown name, missing, truncated, corrupt or malicious file, failed download,
impossible argument) raises :class:`DatasetError` with a one-line message.

Splits: ``"val"`` is a seeded fraction (``val_fraction``) of the official training set,
disjoint from ``"train"``; ``"test"`` is the official test set. ``digits`` and ``folder``
have no official test set: a fixed 20% (digits) or 10% (folder) is carved out with a seed
that does not depend on ``seed``, then val from the rest. Same arguments, same split.

``root`` defaults to ``$INVERTIBLE_DATA/<name>`` or ``~/.cache/invertible/<name>`` for
the file datasets (mnist, fashion-mnist, cifar10); ``folder`` needs it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from . import download as _download
from .base import (
    DatasetError,
    ImageData,
    VectorData,
    make_image_data,
    parse_image_size,
    resize_levels,
    set_channels,
)
from .cifar import load_cifar10
from .digits import DIGITS_BINS, load_digits_arrays
from .folder import folder_labels, list_images, load_folder, scan_headers
from .idx import load_idx_pair
from .splits import check_fraction, check_seed, check_split, three_way_indices, train_val_indices
from .toy import TOYS, load_toy

__all__ = ["DATASETS", "DatasetError", "ImageData", "VectorData", "load_dataset"]

DATASETS: tuple[str, ...] = (
    "digits",
    "mnist",
    "fashion-mnist",
    "cifar10",
    "folder",
    "moons",
    "rings",
    "checkerboard",
)
DATA_ENV = "INVERTIBLE_DATA"
DIGITS_TEST_FRACTION = 0.2
FOLDER_TEST_FRACTION = 0.1


def default_root(name: str) -> Path:
    base = os.environ.get(DATA_ENV) or "~/.cache/invertible"
    return Path(base).expanduser() / name


def _check_n(n_samples: int | None) -> int | None:
    if n_samples is None:
        return None
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)):
        raise DatasetError(f"n_samples must be a positive integer, got {n_samples!r}")
    if n_samples < 1:
        raise DatasetError(f"n_samples must be at least 1, got {n_samples}")
    return int(n_samples)


def _official(name: str, root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    if name == "cifar10":
        return load_cifar10(root, split)
    if not root.is_dir():
        raise DatasetError(
            f"data folder {root} does not exist or is not a folder (pass --download to fetch {name})"
        )
    return load_idx_pair(root, split)


def load_dataset(
    name: str,
    root: str | Path | None = None,
    split: str = "train",
    *,
    download: bool = False,
    val_fraction: float = 0.1,
    seed: int = 0,
    image_size: int | tuple[int, int] | None = None,
    grayscale: bool | None = None,
    n_samples: int | None = None,
) -> ImageData | VectorData:
    """Load one split of dataset ``name`` (one of :data:`DATASETS`).

    Images come back as uint8 ``(N, C, H, W)`` levels ``0..n_bins-1``; toy data as float32
    ``(N, 2)``. ``image_size`` resizes (folder: centre crop + Lanczos; others: antialiased
    bilinear, so bits/dim is then not comparable with published figures); ``grayscale``
    forces 1 or 3 channels (None keeps the dataset's own); ``n_samples`` keeps at most the
    first N of the split (toys: draws exactly N). ``download`` fetches mnist,
    fashion-mnist or cifar10 into ``root`` first (see :mod:`invertible.data.download`).
    """
    if not isinstance(name, str) or name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    check_split(split)
    check_fraction(val_fraction)
    check_seed(seed)
    size = parse_image_size(image_size)
    n_max = _check_n(n_samples)
    if download and name not in _download.RESOURCES and name != "digits" and name not in TOYS:
        raise DatasetError(f"dataset {name!r} cannot be downloaded; give its folder instead")

    if name in TOYS:
        if size is not None or grayscale is not None:
            raise DatasetError(f"{name} is 2-D vector data: image_size/grayscale do not apply")
        data = load_toy(name, split, seed, n_max)
        return VectorData(data=torch.from_numpy(data), name=name, split=split)

    labels: np.ndarray | None
    if name == "digits":
        images, labels = load_digits_arrays()
        idx = three_way_indices(len(images), split, val_fraction, seed, DIGITS_TEST_FRACTION)
        images, labels, n_bins = images[idx], labels[idx], DIGITS_BINS
    elif name == "folder":
        if root is None:
            raise DatasetError("the folder dataset needs a folder of images (--data-dir DIR)")
        files = list_images(Path(root).expanduser())
        all_labels = folder_labels(Path(root).expanduser(), files)
        idx = three_way_indices(len(files), split, val_fraction, seed, FOLDER_TEST_FRACTION)
        if n_max is not None:
            idx = idx[:n_max]
        all_grey = scan_headers(files)
        grey = all_grey if grayscale is None else grayscale
        images = load_folder([files[i] for i in idx], size, grey)
        labels = None if all_labels is None else all_labels[idx]
        n_bins = 256
    else:
        base = Path(root).expanduser() if root is not None else default_root(name)
        if download:
            _download.download(name, base)
        if split == "test":
            images, labels = _official(name, base, "test")
        else:
            images, labels = _official(name, base, "train")
            idx = train_val_indices(len(images), split, val_fraction, seed)
            images, labels = images[idx], labels[idx]
        n_bins = 256

    if n_max is not None:
        images = images[:n_max]
        labels = None if labels is None else labels[:n_max]
    images = resize_levels(set_channels(images, grayscale), size, n_bins)
    return make_image_data(images, labels, n_bins, name, split)
