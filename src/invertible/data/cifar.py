"""CIFAR-10 from the binary distribution (``cifar-10-batches-bin``), never from pickles.

Each ``.bin`` file is a sequence of 3073-byte records: one label byte (0..9), then a
32x32 image as 1024 red, 1024 green and 1024 blue bytes, rows in order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import DatasetError

RECORD = 1 + 3 * 32 * 32
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILES = ("test_batch.bin",)
BIN_DIR = "cifar-10-batches-bin"


def cifar_dir(root: Path) -> Path:
    """The folder holding the ``.bin`` files: ``root`` itself or ``root/cifar-10-batches-bin``."""
    for d in (root, root / BIN_DIR):
        if (d / TEST_FILES[0]).is_file() or (d / TRAIN_FILES[0]).is_file():
            return d
    raise DatasetError(
        f"no CIFAR-10 binary files (data_batch_1.bin ... test_batch.bin) in {root} "
        f"or {root / BIN_DIR} (pass --download to fetch them)"
    )


def read_cifar_bin(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` from one batch file."""
    if not path.is_file():
        raise DatasetError(f"missing CIFAR-10 file {path}")
    size = path.stat().st_size
    if size == 0 or size % RECORD:
        raise DatasetError(
            f"{path}: {size} bytes is not a whole number of {RECORD}-byte records "
            "(truncated or not a CIFAR-10 binary batch)"
        )
    try:
        records = np.fromfile(path, dtype=np.uint8).reshape(-1, RECORD)
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {e}") from None
    labels = records[:, 0]
    if labels.max() > 9:
        raise DatasetError(f"{path}: label {int(labels.max())} outside 0..9 (not CIFAR-10?)")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def load_cifar10(root: Path, official_split: str) -> tuple[np.ndarray, np.ndarray]:
    """The official ``"train"`` (5 batches) or ``"test"`` split."""
    d = cifar_dir(root)
    names = TRAIN_FILES if official_split == "train" else TEST_FILES
    parts = [read_cifar_bin(d / name) for name in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
