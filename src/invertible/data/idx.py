"""MNIST and Fashion-MNIST from their original IDX files (gzip-compressed or not).

The IDX format: a big-endian header (magic ``0x0000TTNN``: type ``TT`` = 0x08 for uint8,
``NN`` dimensions), one uint32 per dimension, then the raw data. Every size is checked
against the header before any large buffer is allocated, so a corrupt or malicious header
claiming huge dimensions costs nothing but an error.
"""

from __future__ import annotations

import gzip
import zlib
from io import BufferedIOBase
from pathlib import Path

import numpy as np

from .base import DatasetError

IMAGE_MAGIC = 2051  # uint8, 3 dimensions (count, rows, cols)
LABEL_MAGIC = 2049  # uint8, 1 dimension (count)
# No IDX file we load holds more than this; refusing larger claims bounds memory use.
MAX_IDX_BYTES = 1 << 31
MAX_SIDE = 8192
_CHUNK = 1 << 24

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
GZ_NAMES = tuple(f"{stem}.gz" for pair in IDX_FILES.values() for stem in pair)


def find_idx_file(root: Path, stem: str) -> Path:
    """``root/stem.gz`` or ``root/stem`` (also the common ``name.idx3-ubyte`` spelling)."""
    dotted = stem.replace("-idx", ".idx")
    candidates = [f"{stem}.gz", stem, f"{dotted}.gz", dotted]
    for name in candidates:
        if (root / name).is_file():
            return root / name
    raise DatasetError(f"missing {stem}.gz (or un-gzipped {stem}) in {root}")


def _read_exact(f: BufferedIOBase, n: int, path: Path, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise DatasetError(f"{path}: truncated {what} ({len(data)} of {n} bytes)")
    return data


def _read_capped(f: BufferedIOBase, limit: int) -> bytearray:
    """Read at most ``limit`` bytes in chunks: memory grows only with data actually there."""
    buf = bytearray()
    while len(buf) < limit:
        chunk = f.read(min(_CHUNK, limit - len(buf)))
        if not chunk:
            break
        buf += chunk
    return buf


def _parse(f: BufferedIOBase, path: Path, magic: int, file_size: int | None) -> np.ndarray:
    head = _read_exact(f, 4, path, "IDX header")
    found = int.from_bytes(head, "big")
    if found != magic:
        kind = "image" if magic == IMAGE_MAGIC else "label"
        raise DatasetError(
            f"{path}: wrong magic number {found} (expected {magic} for an IDX {kind} file)"
        )
    ndim = magic & 0xFF
    raw_dims = np.frombuffer(_read_exact(f, 4 * ndim, path, "IDX header"), dtype=">u4")
    dims = tuple(int(d) for d in raw_dims)
    if dims[0] == 0:
        raise DatasetError(f"{path}: the header says the file holds no items")
    if any(d == 0 or d > MAX_SIDE for d in dims[1:]):
        raise DatasetError(f"{path}: implausible item size {dims[1:]} in the header")
    n_bytes = int(np.prod(dims, dtype=object))
    if n_bytes > MAX_IDX_BYTES:
        raise DatasetError(
            f"{path}: header claims {dims} = {n_bytes} bytes, more than the "
            f"{MAX_IDX_BYTES} this loader accepts (corrupt header?)"
        )
    header = 4 + 4 * ndim
    if file_size is not None and file_size != header + n_bytes:
        raise DatasetError(
            f"{path}: file has {file_size} bytes but its header {dims} describes "
            f"{header + n_bytes} (truncated or corrupt)"
        )
    data = _read_capped(f, n_bytes + 1)
    if len(data) < n_bytes:
        raise DatasetError(
            f"{path}: truncated: header {dims} describes {n_bytes} data bytes, "
            f"the file holds {len(data)}"
        )
    if len(data) > n_bytes:
        raise DatasetError(f"{path}: trailing data after the {n_bytes} bytes its header describes")
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def read_idx(path: str | Path, magic: int) -> np.ndarray:
    """Read one uint8 IDX file, gzip-compressed or raw (detected from its first bytes)."""
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            gz = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            if not gz:
                return _parse(raw, path, magic, path.stat().st_size)
            with gzip.GzipFile(fileobj=raw, mode="rb") as f:
                return _parse(f, path, magic, None)
    except DatasetError:
        raise
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DatasetError(f"{path}: corrupt gzip data ({e})") from None
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {e.strerror or e}") from None


def load_idx_pair(root: Path, split: str, n_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 1, 28, 28)`` and labels ``(N,)`` of the official ``"train"``/``"test"``."""
    img_stem, lab_stem = IDX_FILES[split]
    img_path, lab_path = find_idx_file(root, img_stem), find_idx_file(root, lab_stem)
    images = read_idx(img_path, IMAGE_MAGIC)
    labels = read_idx(lab_path, LABEL_MAGIC)
    if len(images) != len(labels):
        raise DatasetError(
            f"{img_path.name} holds {len(images)} images but {lab_path.name} "
            f"holds {len(labels)} labels"
        )
    if labels.max() >= n_classes:
        raise DatasetError(f"{lab_path}: label {int(labels.max())} outside 0..{n_classes - 1}")
    return images[:, None], labels
