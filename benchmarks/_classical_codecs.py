"""Classical lossless codecs on a stack of grey images, the baselines of the MNIST benchmark.

``classical_rows(images, idx_gz_path)`` returns one dict per codec row: ``codec``, ``mode``
("whole set" or "per image"), ``bytes``, ``bpd`` (8 * bytes / pixels), ``encode_img_s`` and
``decode_img_s`` (images per second, median of ``repeats`` full passes) and ``exact`` (every
decoded pixel compared with the input). A codec that cannot run here (package or library
missing) gives a row with ``bytes`` None and a ``note`` saying why, never an exception.

Deliberately free of torch and of the ``invertible`` package (which imports torch), so the
numbers measure the codecs alone. Codecs that accept it are told to use one thread.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import io
import lzma
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Row = dict[str, Any]
Encode = Callable[[np.ndarray], bytes]
Decode = Callable[[bytes], np.ndarray]

WHOLE, PER_IMAGE = "whole set", "per image"
IDX_IMAGE_MAGIC = 2051
# Highest lossless effort each imagecodecs encoder offers (libwebp 1.6, libjxl 0.11):
# WebP lossless "-z 9" is quality 100 with method 6; libjxl's effort runs 1..10.
WEBP_LEVEL, WEBP_METHOD = 100, 6
JXL_EFFORT = 10


def _timed(fn: Callable[[], Any], repeats: int) -> tuple[Any, float]:
    """The last call's result and the median wall seconds over ``repeats`` calls."""
    times, result = [], None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return result, statistics.median(times)


def _row(codec: str, mode: str, n_bytes: int | None, n_pixels: int, n_images: int,
         enc_s: float | None, dec_s: float | None, exact: bool, note: str | None = None) -> Row:
    row: Row = {
        "codec": codec,
        "mode": mode,
        "bytes": n_bytes,
        "bpd": None if n_bytes is None else 8 * n_bytes / n_pixels,
        "encode_img_s": None if enc_s is None else n_images / enc_s,
        "decode_img_s": None if dec_s is None else n_images / dec_s,
        "exact": exact,
    }
    if note:
        row["note"] = note
    return row


def _missing(codec: str, mode: str, images: np.ndarray, note: str) -> Row:
    return _row(codec, mode, None, images.size, len(images), None, None, False, note)


def _tile(images: np.ndarray) -> np.ndarray:
    """One grey canvas, ceil(sqrt(N)) images wide, the last row padded with black."""
    n, h, w = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    padded = np.zeros((rows * cols, h, w), np.uint8)
    padded[:n] = images
    return padded.reshape(rows, cols, h, w).transpose(0, 2, 1, 3).reshape(rows * h, cols * w)


def _untile(canvas: np.ndarray, n: int, h: int, w: int) -> np.ndarray:
    """Inverse of ``_tile``; a canvas of the wrong shape comes back as is (so: not exact)."""
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    if canvas.shape != (rows * h, cols * w):
        return canvas
    return canvas.reshape(rows, h, cols, w).transpose(0, 2, 1, 3).reshape(-1, h, w)[:n]


def _per_image_row(codec: str, encode: Encode, decode: Decode, images: np.ndarray,
                   repeats: int) -> Row:
    """One stream per image, encoded and decoded in a Python loop, as an application would."""
    blobs, enc_s = _timed(lambda: [encode(im) for im in images], repeats)
    decoded, dec_s = _timed(lambda: [decode(b) for b in blobs], repeats)
    exact = len(decoded) == len(images) and all(
        np.array_equal(d, im) for d, im in zip(decoded, images, strict=False))
    return _row(codec, PER_IMAGE, sum(len(b) for b in blobs), images.size, len(images),
                enc_s, dec_s, exact)


def _tiled_row(codec: str, encode: Encode, decode: Decode, images: np.ndarray,
               repeats: int) -> Row:
    """All images as one tiled picture; tiling and cropping back count in the timings."""
    n, h, w = images.shape
    blob, enc_s = _timed(lambda: encode(_tile(images)), repeats)
    decoded, dec_s = _timed(lambda: _untile(decode(blob), n, h, w), repeats)
    return _row(codec, WHOLE, len(blob), images.size, n, enc_s, dec_s,
                np.array_equal(decoded, images))


def _parse_idx_images(raw: bytes) -> np.ndarray:
    """The uint8 image array of an IDX3 file (big-endian magic, three uint32 sizes, pixels)."""
    magic, n, h, w = np.frombuffer(raw, ">u4", count=4).tolist()
    if magic != IDX_IMAGE_MAGIC or len(raw) != 16 + n * h * w:
        raise ValueError(f"not an IDX image file (magic {magic}, {len(raw)} bytes)")
    return np.frombuffer(raw, np.uint8, offset=16).reshape(n, h, w)


def idx_gz_row(images: np.ndarray, path: Path, repeats: int = 1) -> Row:
    """The file as distributed: its size on disk, and gunzip + parse as the decode."""
    codec = "IDX .gz as distributed"
    if not path.is_file():
        return _missing(codec, WHOLE, images, f"{path} not found")
    n_bytes = path.stat().st_size
    decoded, dec_s = _timed(lambda: _parse_idx_images(gzip.decompress(path.read_bytes())),
                            repeats)
    # The file always holds the whole set: rates and bpd are over what it holds, and a
    # subset of images is checked against the file's first images.
    held = decoded[: len(images)]
    exact = held.shape == images.shape and np.array_equal(held, images)
    note = None
    if len(decoded) != len(images):
        note = f"file holds {len(decoded)} images; bpd and decode rate are over all of them"
    return _row(codec, WHOLE, n_bytes, decoded.size, len(decoded), None, dec_s, exact, note)


Pack = Callable[[bytes], bytes]


def _stream_codecs() -> list[tuple[str, Pack | None, Pack | None]]:
    """General-purpose compressors at strong settings, as (name, enc, dec); None if missing."""
    codecs: list[tuple[str, Pack | None, Pack | None]] = [
        ("gzip -9", lambda b: gzip.compress(b, compresslevel=9, mtime=0), gzip.decompress),
        ("bz2 -9", lambda b: bz2.compress(b, compresslevel=9), bz2.decompress),
        ("xz -9e", lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME), lzma.decompress),
    ]
    try:
        import zstandard
    except ImportError:
        codecs.append(("zstd -19", None, None))
    else:
        codecs.append(("zstd -19", zstandard.ZstdCompressor(level=19).compress,
                       zstandard.ZstdDecompressor().decompress))
    try:
        import brotli
    except ImportError:
        codecs.append(("brotli -q 11", None, None))
    else:
        codecs.append(("brotli -q 11", lambda b: brotli.compress(b, quality=11),
                       brotli.decompress))
    return codecs


def _stream_row(name: str, enc: Pack, dec: Pack, images: np.ndarray, repeats: int) -> Row:
    blob, enc_s = _timed(lambda: enc(images.tobytes()), repeats)
    decoded, dec_s = _timed(
        lambda: np.frombuffer(dec(blob), np.uint8).reshape(images.shape), repeats)
    return _row(name, WHOLE, len(blob), images.size, len(images), enc_s, dec_s,
                np.array_equal(decoded, images))


def stream_rows(images: np.ndarray, repeats: int = 1) -> list[Row]:
    """The raw pixel array (``images.tobytes()``) through each general-purpose compressor."""
    return [_missing(name, WHOLE, images, "package not installed")
            if enc is None or dec is None else _stream_row(name, enc, dec, images, repeats)
            for name, enc, dec in _stream_codecs()]


def png_rows(images: np.ndarray, repeats: int = 1) -> list[Row]:
    """Pillow PNG, mode L, ``optimize=True``: per image and tiled."""
    codec = "PNG optimize"
    try:
        from PIL import Image
    except ImportError:
        return [_missing(codec, m, images, "Pillow not installed") for m in (PER_IMAGE, WHOLE)]

    def encode(arr: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG", optimize=True)
        return buf.getvalue()

    def decode(blob: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(blob)) as im:
            return np.array(im)

    return [_per_image_row(codec, encode, decode, images, repeats),
            _tiled_row(codec, encode, decode, images, repeats)]


def _imagecodecs(feature: str) -> tuple[Any, str | None]:
    """The imagecodecs module if it has ``feature`` (e.g. "WEBP"), else a reason why not."""
    try:
        import imagecodecs
    except ImportError:
        return None, "imagecodecs not installed"
    if not getattr(getattr(imagecodecs, feature, None), "available", False):
        return None, f"imagecodecs {imagecodecs.__version__} was built without {feature}"
    return imagecodecs, None


def webp_rows(images: np.ndarray, repeats: int = 1) -> list[Row]:
    """Lossless WebP at maximum effort, per image and tiled."""
    codec = f"WebP lossless q{WEBP_LEVEL} m{WEBP_METHOD}"
    ic, why = _imagecodecs("WEBP")
    if ic is None:
        return [_missing(codec, m, images, why or "") for m in (PER_IMAGE, WHOLE)]

    # libwebp takes only RGB(A): the grey plane goes in three times (its subtract-green
    # transform makes the copies nearly free) and the decoder keeps one.
    def encode(arr: np.ndarray) -> bytes:
        rgb = np.repeat(arr[..., None], 3, axis=-1)
        return ic.webp_encode(rgb, level=WEBP_LEVEL, lossless=True, method=WEBP_METHOD,
                              numthreads=1)

    def decode(blob: bytes) -> np.ndarray:
        return ic.webp_decode(blob)[..., 0]

    return [_per_image_row(codec, encode, decode, images, repeats),
            _tiled_row(codec, encode, decode, images, repeats)]


def jpegxl_rows(images: np.ndarray, repeats: int = 1) -> list[Row]:
    """Lossless JPEG-XL at maximum effort, per image and tiled."""
    codec = f"JPEG-XL lossless e{JXL_EFFORT}"
    ic, why = _imagecodecs("JPEGXL")
    if ic is None:
        return [_missing(codec, m, images, why or "") for m in (PER_IMAGE, WHOLE)]

    def encode(arr: np.ndarray) -> bytes:
        return ic.jpegxl_encode(arr, lossless=True, effort=JXL_EFFORT, numthreads=1)

    def decode(blob: bytes) -> np.ndarray:
        return ic.jpegxl_decode(blob, numthreads=1)

    return [_per_image_row(codec, encode, decode, images, repeats),
            _tiled_row(codec, encode, decode, images, repeats)]


def classical_rows(images: np.ndarray, idx_gz_path: Path | None,
                   repeats: int = 1) -> list[Row]:
    """Every classical row, in table order; ``idx_gz_path`` None skips the distributed file."""
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"expected uint8 (N, H, W) images, got {images.dtype} {images.shape}")
    images = np.ascontiguousarray(images)
    rows = [] if idx_gz_path is None else [idx_gz_row(images, Path(idx_gz_path), repeats)]
    for family in (stream_rows, png_rows, webp_rows, jpegxl_rows):
        rows += family(images, repeats)
    return rows


def format_table(rows: list[Row]) -> str:
    """A plain-text table of the rows, for a quick look."""
    def num(v: float | None, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    head = (f"{'codec':<26} {'mode':<9} {'bytes':>10} {'bpd':>7} {'enc img/s':>10} "
            f"{'dec img/s':>10}  exact")
    lines = [head]
    for r in rows:
        lines.append(
            f"{r['codec']:<26} {r['mode']:<9} {num(r['bytes'], 'd'):>10} "
            f"{num(r['bpd'], '.4f'):>7} {num(r['encode_img_s'], '.1f'):>10} "
            f"{num(r['decode_img_s'], '.1f'):>10}  {r['exact']}"
            + (f"  ({r['note']})" if "note" in r else ""))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idx", type=Path,
                        default=Path("/work/shared/data/mnist/t10k-images-idx3-ubyte.gz"))
    parser.add_argument("--n", type=int, default=500, help="first N test images")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    # Only this entry point uses the library's loader (it brings torch in with it).
    from invertible.data.idx import IMAGE_MAGIC, read_idx

    images = read_idx(args.idx, IMAGE_MAGIC)[: args.n]
    t0 = time.perf_counter()
    rows = classical_rows(images, args.idx, args.repeats)
    print(f"{len(images)} images {images.shape[1:]}, repeats {args.repeats}")
    print(format_table(rows))
    print(f"total {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
