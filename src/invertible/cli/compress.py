"""``invertible compress`` / ``invertible decompress``: lossless image files with a codec run.

A run trained with ``--task codec`` (an integer discrete flow) turns images into a ``.inv``
stream (``invertible.codec``) and back, bit for bit. The stream names the model that made
it, so decoding with another run is refused.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ._runs import add_run_args, open_from_args
from .common import UsageError, output_path, positive_int, say


def add_parsers(sub: Any) -> None:
    c = sub.add_parser("compress", help="images -> a lossless .inv stream (codec runs)",
                       description="Compress images losslessly with a run trained with --task "
                       "codec. INPUT: an IDX file (.gz or not), a .npy array of integer levels "
                       "(H, W), (N, H, W) or (N, 1, H, W), an 8-bit grey PNG, or a folder of "
                       "them (one size). Images larger than the model's input, or of other "
                       "sides, are cut into tiles after padding by edge repetition; the "
                       "stream records the true size.")
    add_run_args(c)
    c.add_argument("input", metavar="INPUT", help="IDX file, .npy, .png, or a folder of .png")
    c.add_argument("-o", "--output", required=True, help="the stream, OUT.inv")
    c.add_argument("--chunk", type=positive_int, default=None, metavar="N",
                   help="images per independent chunk (default: about 256 model-sized tiles)")
    c.add_argument("--force", action="store_true", help="overwrite an existing output")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    c.set_defaults(run=run_compress)

    d = sub.add_parser("decompress", help="a .inv stream -> the very images it was made from",
                       description="Restore the images of a .inv stream, verified against "
                       "its checksums: an IDX file byte for byte (uncompressed, or gzipped "
                       "when OUTPUT ends in .gz), a .npy with the same dtype and shape, a PNG "
                       "or a folder of PNGs with the same pixels and names. Any stream can also "
                       "go to a .npy array (N, H, W).")
    add_run_args(d)
    d.add_argument("stream", metavar="STREAM", help="a .inv file from 'invertible compress'")
    d.add_argument("-o", "--output", required=True,
                   help="where to restore the input (its kind follows the stream's source)")
    d.add_argument("--workers", type=positive_int, default=1, metavar="N",
                   help="decode N chunks at once (threads; the result never depends on it)")
    d.add_argument("--force", action="store_true", help="overwrite an existing output")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    d.set_defaults(run=run_decompress)


def _compressor(args: argparse.Namespace) -> Any:
    from ..codec.compressor import Compressor
    from ..privacy.release import model_id
    from ..training.objectives import CodecObjective, TaskError

    run = open_from_args(args)
    if not isinstance(run.objective, CodecObjective):
        raise TaskError(f"'{args.command}' needs a run trained with --task codec; this run's "
                        f"task is '{run.config.task}'")
    digest = bytes.fromhex(model_id(run.objective, run.config, run.data))
    return Compressor(run.objective.flow, digest)


def _bar(total: int, what: str, off: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc=what, disable=off or not sys.stderr.isatty(),
                leave=False)


def run_compress(args: argparse.Namespace) -> int:
    from ..codec.compressor import StreamError
    from ..codec.images import ImageInputError, read_images
    from ..training.checkpoint import atomic_write_bytes

    out = output_path(args.output, args.force, (".inv",))
    try:
        images = read_images(args.input)
        compressor = _compressor(args)
        n = len(images.pixels)
        t0 = time.perf_counter()
        with _bar(n, "compress", args.no_progress) as bar:
            data = compressor.compress(images, args.chunk, progress=bar.update)
        seconds = time.perf_counter() - t0
    except (ImageInputError, StreamError) as err:
        raise UsageError(str(err)) from None
    try:
        atomic_write_bytes(out, data)
    except OSError as err:
        raise UsageError(f"cannot write {out}: {err.strerror or err}") from None
    raw = images.pixels.size
    say(f"compressed {n} image(s) of {images.pixels.shape[1]}x{images.pixels.shape[2]} "
        f"({raw:,} bytes of pixels) to {out}: {len(data):,} bytes, "
        f"{8 * len(data) / raw:.4f} bits/dim, ratio {raw / len(data):.2f}:1, "
        f"{n / max(seconds, 1e-9):.1f} images/s")
    return 0


def run_decompress(args: argparse.Namespace) -> int:
    from ..codec.compressor import StreamError
    from ..codec.images import ImageInputError, output_kind, write_images

    path = Path(args.stream)
    if not path.is_file():
        raise UsageError(f"stream {path} does not exist")
    out = Path(args.output)
    if out.exists() and not args.force:
        raise UsageError(f"output {out} exists (use --force to overwrite it)")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UsageError(f"cannot read {path}: {err.strerror or err}") from None
    try:
        compressor = _compressor(args)
        header, _, _ = compressor.read_header(data)
        output_kind(header.source, out)  # refuse a wrong output before decoding
        t0 = time.perf_counter()
        with _bar(header.count, "decompress", args.no_progress) as bar:
            images = compressor.decompress(data, args.workers, progress=bar.update)
        seconds = time.perf_counter() - t0
        written = write_images(images, out, args.force)
    except (ImageInputError, StreamError) as err:
        raise UsageError(str(err)) from None
    except OSError as err:
        raise UsageError(f"cannot write {out}: {err.strerror or err}") from None
    n = header.count
    say(f"decompressed {n} image(s) of {header.height}x{header.width} from {path} to "
        f"{written} (checksums verified), {n / max(seconds, 1e-9):.1f} images/s")
    return 0
