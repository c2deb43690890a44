"""``invertible encode`` / ``invertible decode``: images <-> latents, an exact round trip.

Images are encoded at their bin centres ``(k + 0.5) / n_bins`` (dequantization noise fixed
at 0.5), so decoding and flooring back to levels returns the very same integers.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._runs import add_run_args, flow_of, load_run_split, open_from_args
from .common import UsageError, npy_bytes, output_path, positive_int, say


def add_parsers(sub: Any) -> None:
    e = sub.add_parser("encode", help="images -> latents (.npy or .safetensors)",
                       description="Map images (a PNG, a .npy of integer levels, or a data "
                       "split) to latents z = f(x) with x at the bin centres.")
    add_run_args(e, data=True)
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", "-i", help="FILE.png, or FILE.npy of integer levels "
                     "(N, C, H, W) in [0, n_bins) (vectors: float (N, D))")
    src.add_argument("--split", choices=["train", "val", "test"], help="encode a data split")
    e.add_argument("-n", "--num", type=positive_int, default=None,
                   help="with --split: the first N examples")
    e.add_argument("-o", "--output", required=True, help="latents.npy or latents.safetensors")
    e.add_argument("--force", action="store_true", help="overwrite an existing output")
    e.set_defaults(run=run_encode)

    d = sub.add_parser("decode", help="latents -> images (.png grid or .npy levels)",
                       description="Map latents back to data: x = f^-1(z), floored to levels.")
    add_run_args(d)
    d.add_argument("latents", help="a .npy or .safetensors file from 'invertible encode'")
    d.add_argument("-o", "--output", required=True, help="FILE.png or FILE.npy")
    d.add_argument("--force", action="store_true", help="overwrite an existing output")
    d.set_defaults(run=run_decode)


def _read_png(path: Path, shape: tuple[int, ...], n_bins: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    c, h, w = shape
    try:
        with Image.open(path) as opened:
            img = opened.convert("L" if c == 1 else "RGB")
            a = np.asarray(img, dtype=np.float64)
    except (OSError, UnidentifiedImageError) as err:
        raise UsageError(f"cannot read image {path} ({err})") from None
    if a.shape[:2] != (h, w):
        raise UsageError(f"image {path} is {a.shape[1]}x{a.shape[0]}, the model takes {w}x{h}")
    a = a[None] if c == 1 else a.transpose(2, 0, 1)
    # The inverse of how grids are written: level k is shown as round(k * 255 / (n - 1)).
    return np.round(a * (n_bins - 1) / 255.0).astype(np.int64)[None]


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise UsageError(f"cannot read {path} as a .npy array ({err})") from None


def _check_levels(a: np.ndarray, shape: tuple[int, ...], n_bins: int, src: str) -> torch.Tensor:
    if a.ndim == len(shape):
        a = a[None]
    if a.ndim == 3 and shape[0] == 1 and tuple(a.shape[1:]) == tuple(shape[1:]):
        a = a[:, None]
    if tuple(a.shape[1:]) != tuple(shape):
        raise UsageError(f"{src} holds shape {tuple(a.shape)}, the model takes (N, "
                         f"{', '.join(map(str, shape))})")
    if not np.issubdtype(a.dtype, np.integer) and (
        not np.all(np.isfinite(a)) or not np.all(a == np.round(a))
    ):
        raise UsageError(f"{src} must hold integer levels in [0, {n_bins})")
    if a.size and (a.min() < 0 or a.max() >= n_bins):
        raise UsageError(f"{src} has values outside the levels [0, {n_bins})")
    return torch.from_numpy(a.astype(np.uint8))


def run_encode(args: argparse.Namespace) -> int:
    from safetensors.torch import save as st_save

    from ..training.checkpoint import atomic_write_bytes

    out = output_path(args.output, args.force, (".npy", ".safetensors"))
    r = open_from_args(args)
    obj = r.objective
    bij = flow_of(r, "encode").bijection
    shape = tuple(r.data["shape"])
    if args.split is not None:
        x = load_run_split(r, args.split, args.data_dir).x
        x = x[: args.num] if args.num else x
        src = f"the {args.split} split"
    else:
        path = Path(args.input)
        if not path.is_file():
            raise UsageError(f"input {path} does not exist")
        src = str(path)
        if path.suffix.lower() == ".png":
            if obj.kind != "image":
                raise UsageError("a PNG input needs an image model")
            assert obj.n_bins is not None  # image objectives always have their levels
            x = _check_levels(_read_png(path, shape, obj.n_bins), shape, obj.n_bins, src)
        elif path.suffix.lower() == ".npy":
            a = _read_npy(path)
            if obj.kind == "image":
                assert obj.n_bins is not None
                x = _check_levels(a, shape, obj.n_bins, src)
            else:
                a = np.atleast_2d(a)
                if a.ndim != 2 or a.shape[1] != shape[0] or not np.all(np.isfinite(a)):
                    raise UsageError(f"{src} must hold finite vectors (N, {shape[0]})")
                x = torch.from_numpy(a.astype(np.float32))
        else:
            raise UsageError(f"input {path} must be a .png or .npy file")
    device = next(obj.parameters()).device
    zs = []
    with torch.no_grad():
        for start in range(0, len(x), 256):
            xb = x[start : start + 256].to(device)
            xb = obj.center(xb) if obj.kind == "image" else xb
            zs.append(bij(xb)[0].cpu())
    z = torch.cat(zs)
    if out.suffix.lower() == ".npy":
        atomic_write_bytes(out, npy_bytes(z.numpy()))
    else:
        atomic_write_bytes(out, st_save({"latents": z.contiguous()},
                                        {"run": str(r.paths.root), "shape": str(list(shape))}))
    say(f"encoded {len(z)} example(s) from {src} to latents {tuple(z.shape)} in {out}")
    return 0


def _read_latents(path: Path) -> np.ndarray:
    if not path.is_file():
        raise UsageError(f"latents file {path} does not exist")
    if path.suffix.lower() == ".npy":
        return _read_npy(path)
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load as st_load

        try:
            t = st_load(path.read_bytes())
        except (OSError, SafetensorError, ValueError) as err:
            raise UsageError(f"cannot read {path} as safetensors ({err})") from None
        if "latents" not in t:
            raise UsageError(f"{path} has no 'latents' tensor")
        return t["latents"].numpy()
    raise UsageError(f"latents file {path} must be .npy or .safetensors")


def run_decode(args: argparse.Namespace) -> int:
    from ..training.checkpoint import atomic_write_bytes
    from ..training.plots import save_image_grid, save_scatter

    out = output_path(args.output, args.force, (".png", ".npy"))
    z_np = _read_latents(Path(args.latents))
    r = open_from_args(args)
    obj = r.objective
    bij = flow_of(r, "decode").bijection
    shape = tuple(r.data["shape"])
    if z_np.ndim == len(shape):
        z_np = z_np[None]
    if tuple(z_np.shape[1:]) != shape or not np.issubdtype(z_np.dtype, np.floating):
        raise UsageError(f"latents have shape {tuple(z_np.shape)} ({z_np.dtype}); the model's "
                         f"are float (N, {', '.join(map(str, shape))})")
    if not np.all(np.isfinite(z_np)):
        raise UsageError("latents contain non-finite values")
    dtype = next(obj.parameters()).dtype
    device = next(obj.parameters()).device
    z = torch.from_numpy(z_np).to(device, dtype)
    with torch.no_grad():
        x = torch.cat([bij.inverse(z[s : s + 256])[0]
                       for s in range(0, len(z), 256)])
    if obj.kind == "image":
        levels = obj.to_levels(x).cpu().numpy()
        if out.suffix.lower() == ".npy":
            atomic_write_bytes(out, npy_bytes(levels))
        else:
            assert obj.n_bins is not None  # image objectives always have their levels
            save_image_grid(levels, obj.n_bins, out)
    else:
        xs = x.float().cpu().numpy()
        if out.suffix.lower() == ".npy":
            atomic_write_bytes(out, npy_bytes(xs))
        else:
            save_scatter(xs, out)
    say(f"decoded {len(z)} latent(s) to {out}")
    return 0
