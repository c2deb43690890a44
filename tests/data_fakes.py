"""Small fake dataset files for the data tests: IDX, CIFAR-10 binary, image folders.

Every fake image carries its index in its first two pixels (``i % 256``, ``i // 256``), so
tests can tell exactly which items a split holds.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def tagged_images(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Random uint8 images ``(n, *shape)`` whose first two bytes encode the index."""
    x = np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)
    flat = x.reshape(n, -1)
    flat[:, 0] = np.arange(n) % 256
    flat[:, 1] = np.arange(n) // 256
    return x


def image_ids(images: np.ndarray) -> np.ndarray:
    flat = np.asarray(images).reshape(len(images), -1).astype(np.int64)
    return flat[:, 0] + 256 * flat[:, 1]


def idx_bytes(
    array: np.ndarray, magic: int | None = None, dims: tuple[int, ...] | None = None
) -> bytes:
    """An IDX file for uint8 ``array``; ``magic``/``dims`` override the true header."""
    array = np.asarray(array, dtype=np.uint8)
    magic = (0x0800 | array.ndim) if magic is None else magic
    dims = array.shape if dims is None else dims
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in dims)
    return header + array.tobytes()


def write_bytes(path: Path, data: bytes, gz: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data, mtime=0))
    else:
        path.write_bytes(data)
    return path


def write_mnist_dir(
    root: Path, n_train: int = 60, n_test: int = 20, gz: bool = True, side: int = 6
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Fake MNIST-layout IDX files in ``root``; returns the arrays per official split."""
    out = {}
    for split, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        images = tagged_images(n, (side, side), seed)
        labels = np.random.default_rng(seed).integers(0, 10, size=n, dtype=np.uint8)
        img_stem, lab_stem = IDX_STEMS[split]
        write_bytes(root / img_stem, idx_bytes(images), gz)
        write_bytes(root / lab_stem, idx_bytes(labels), gz)
        out[split] = (images, labels)
    return out


CIFAR_TRAIN = [f"data_batch_{i}.bin" for i in range(1, 6)]
CIFAR_TEST = ["test_batch.bin"]


def cifar_bytes(images: np.ndarray, labels: np.ndarray) -> bytes:
    records = np.concatenate([labels[:, None], images.reshape(len(images), -1)], axis=1)
    return records.astype(np.uint8).tobytes()


def write_cifar_dir(root: Path, per_batch: int = 4) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Fake ``.bin`` batches in ``root``; returns the arrays per official split."""
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, names, seed in (("train", CIFAR_TRAIN, 3), ("test", CIFAR_TEST, 4)):
        n = per_batch * len(names)
        images = tagged_images(n, (3, 32, 32), seed)
        labels = np.random.default_rng(seed).integers(0, 10, size=n, dtype=np.uint8)
        for k, name in enumerate(names):
            part = slice(k * per_batch, (k + 1) * per_batch)
            (root / name).write_bytes(cifar_bytes(images[part], labels[part]))
        out[split] = (images, labels)
    return out


def cifar_archive(
    path: Path, bin_dir: Path, extra: dict[str, bytes] | None = None, symlink: str | None = None
) -> Path:
    """A tar.gz like the official one; ``extra`` adds members, ``symlink`` fakes one batch."""
    with tarfile.open(path, "w:gz") as tar:
        for f in sorted(bin_dir.iterdir()):
            name = f"cifar-10-batches-bin/{f.name}"
            if f.name == symlink:
                info = tarfile.TarInfo(name)
                info.type = tarfile.SYMTYPE
                info.linkname = "/etc/passwd"
                tar.addfile(info)
            else:
                tar.add(f, arcname=name)
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_image(path: Path, array: np.ndarray, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt)
    return path
