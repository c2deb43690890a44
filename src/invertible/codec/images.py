"""The inputs the codec reads, and how it restores them exactly.

- an IDX image file (``.gz`` or not): uint8 ``(N, H, W)``; restored byte for byte (the IDX
  format is fully determined by its dimensions and data), gzip-compressed again when the
  output's name ends in ``.gz``;
- a ``.npy`` integer array ``(H, W)``, ``(N, H, W)`` or ``(N, 1, H, W)`` with values in
  0..255: restored with the same dtype and shape;
- an 8-bit grey PNG: restored as a PNG with the same pixel array;
- a folder of 8-bit grey PNGs of one size: restored as a folder of PNGs with the same names.

Colour, 16-bit or palette images are refused with a one-line ``ImageInputError``: the model
codes single-channel 8-bit images, and converting would not be lossless.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ImageInputError", "SourceImages", "read_images", "write_images"]

_IDX_UINT8 = 0x08


class ImageInputError(ValueError):
    """An input that is not images the codec can take, or an output it cannot write."""


@dataclass
class SourceImages:
    """Pixels ``(N, H, W)`` uint8, where they came from, and what restoring needs."""

    pixels: np.ndarray
    source: str  # "array", "idx", "png" or "folder" (container.SOURCES)
    meta: dict[str, Any] = field(default_factory=dict)


def read_images(path: str | Path) -> SourceImages:
    """Read an IDX file, a ``.npy``, a PNG or a folder of PNGs (see the module docstring)."""
    path = Path(path)
    if path.is_dir():
        return _read_folder(path)
    if not path.is_file():
        raise ImageInputError(f"input {path} does not exist")
    try:
        head = path.read_bytes()[:8]
    except OSError as err:
        raise ImageInputError(f"cannot read {path}: {err.strerror or err}") from None
    if head.startswith(b"\x89PNG"):
        return SourceImages(_read_png(path)[None], "png", {})
    if head.startswith(b"\x93NUMPY"):
        return _read_npy(path)
    if head.startswith(b"\x1f\x8b") or head[:3] == b"\x00\x00\x08":
        return _read_idx(path)
    raise ImageInputError(f"{path} is not an IDX file, a .npy array or a PNG image")


def _read_idx(path: Path) -> SourceImages:
    from ..data.base import DatasetError
    from ..data.idx import IMAGE_MAGIC, read_idx

    try:
        pixels = read_idx(path, IMAGE_MAGIC)
    except DatasetError as err:
        raise ImageInputError(f"{err} (the codec takes IDX files of uint8 images, "
                              "N x rows x columns)") from None
    return SourceImages(np.ascontiguousarray(pixels), "idx", {})


def _read_npy(path: Path) -> SourceImages:
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ImageInputError(f"cannot read {path} as a .npy array ({err})") from None
    if a.dtype.kind not in "iu":
        raise ImageInputError(f"{path} holds {a.dtype} values; the codec takes integer pixel "
                              "levels 0..255")
    shape = a.shape
    if a.ndim == 4 and a.shape[1] == 1:
        pixels = a[:, 0]
    elif a.ndim in (2, 3):
        pixels = a.reshape(-1, *a.shape[-2:])
    else:
        raise ImageInputError(f"{path} has shape {shape}; the codec takes (H, W), (N, H, W) or "
                              "(N, 1, H, W) grey images")
    if pixels.size == 0:
        raise ImageInputError(f"{path} holds no pixels")
    if int(pixels.min()) < 0 or int(pixels.max()) > 255:
        raise ImageInputError(f"{path} has values outside 0..255 (from {int(pixels.min())} to "
                              f"{int(pixels.max())})")
    meta = {"dtype": a.dtype.str, "shape": list(shape)}
    return SourceImages(np.ascontiguousarray(pixels, dtype=np.uint8), "array", meta)


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.mode != "L":
                raise ImageInputError(
                    f"{path} is a {img.mode} image; the codec takes 8-bit grey PNGs (mode L), "
                    "and converting it would not be lossless")
            return np.asarray(img, dtype=np.uint8).copy()
    except (OSError, UnidentifiedImageError, ValueError) as err:
        if isinstance(err, ImageInputError):
            raise
        raise ImageInputError(f"cannot read {path} as a PNG ({err})") from None


def _read_folder(path: Path) -> SourceImages:
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".png")
    if not files:
        raise ImageInputError(f"folder {path} holds no .png files")
    arrays = [_read_png(f) for f in files]
    sizes = {a.shape for a in arrays}
    if len(sizes) > 1:
        raise ImageInputError(f"the PNGs in {path} differ in size ({len(sizes)} sizes); one "
                              "stream holds images of one size: compress each size apart")
    return SourceImages(np.stack(arrays), "folder", {"names": [f.name for f in files]})


# -- restoring ---------------------------------------------------------------------------------
def output_kind(source: str, output: Path) -> str:
    """What ``write_images`` writes to ``output`` for a stream from ``source``: the source's
    own kind, or a ``.npy`` array of any source."""
    if output.suffix.lower() == ".npy":
        return "array"
    want = {"idx": "an IDX file (any name but .npy/.png)", "png": "a .png file",
            "folder": "a folder", "array": "a .npy file"}[source]
    ok = {"idx": output.suffix.lower() != ".png", "png": output.suffix.lower() == ".png",
          "folder": output.suffix == "", "array": False}[source]
    if not ok:
        raise ImageInputError(f"this stream holds {source} images: write them to {want}, or to "
                              "a .npy array")
    return source


def write_images(images: SourceImages, output: str | Path, force: bool = False) -> Path:
    """Restore ``images`` to ``output`` atomically (a temporary name, then a rename); an
    existing output is replaced only with ``force``."""
    output = Path(output)
    kind = output_kind(images.source, output)
    if output.exists() and not force:
        raise ImageInputError(f"output {output} exists (use --force to overwrite it)")
    if not output.parent.is_dir():
        raise ImageInputError(f"folder {output.parent} does not exist")
    if kind == "folder":
        _write_folder(images, output)
        return output
    from ..training.checkpoint import atomic_write_bytes

    if output.is_dir():
        raise ImageInputError(f"output {output} is a folder")
    atomic_write_bytes(output, _file_bytes(images, kind, output))
    return output


def _file_bytes(images: SourceImages, kind: str, output: Path) -> bytes:
    px = images.pixels
    if kind == "idx":
        n, h, w = px.shape
        raw = (bytes([0, 0, _IDX_UINT8, 3]) + np.array([n, h, w], dtype=">u4").tobytes()
               + px.tobytes())
        return gzip.compress(raw, 9, mtime=0) if output.suffix.lower() == ".gz" else raw
    if kind == "png":
        return _png_bytes(px[0])
    # A .npy: the source's dtype and shape when it was one, else (N, H, W) uint8.
    arr: np.ndarray = px
    if images.source == "array":
        arr = px.astype(np.dtype(images.meta["dtype"])).reshape(images.meta["shape"])
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _png_bytes(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _write_folder(images: SourceImages, output: Path) -> None:
    names = images.meta.get("names")
    if not isinstance(names, list) or len(names) != len(images.pixels):
        raise ImageInputError("the stream's list of file names does not match its images")
    for name in names:
        if not isinstance(name, str) or Path(name).name != name or not name:
            raise ImageInputError(f"the stream names an unsafe file {json.dumps(name)}")
    if output.exists() and not output.is_dir():
        raise ImageInputError(f"output {output} exists and is not a folder")
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        for name, px in zip(names, images.pixels, strict=True):
            (tmp / name).write_bytes(_png_bytes(px))
        if output.exists():
            # Moved aside, not deleted, until the new folder is in place.
            old = Path(tempfile.mkdtemp(prefix=f".{output.name}.old.", dir=output.parent))
            output.rename(old / output.name)
            tmp.rename(output)
            shutil.rmtree(old)
        else:
            tmp.rename(output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
