"""``invertible encode`` / ``invertible decode``: images <-> latents, an exact round trip.

Images are encoded at their bin centres ``(k + 0.5) / n_bins`` (dequantization noise fixed
at 0.5), so decoding and flooring back to levels returns the very same integers.

``encode RUN --data NAME -o codes.npz`` writes a release for an analyst (codes and labels of
the train and test splits, and the model's id); ``decode RUN codes.npz`` inverts it with the
very model that made it (``invertible.privacy.release``). The encoding is not encryption:
the weights are the key.
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
    e = sub.add_parser("encode", help="images -> latents (.npy, .safetensors, or a .npz "
                       "release with --data)",
                       description="Map images (a PNG, a .npy of integer levels, or a data "
                       "split) to latents z = f(x) with x at the bin centres. With --data NAME "
                       "-o codes.npz: a release for an analyst, the codes and labels of the "
                       "chosen splits and the model's id. Not encryption: anyone holding the "
                       "run's weights decodes it exactly.")
    add_run_args(e, data=True)
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", "-i", help="FILE.png, or FILE.npy of integer levels "
                     "(N, C, H, W) in [0, n_bins) (vectors: float (N, D))")
    src.add_argument("--split", choices=["train", "val", "test"], help="encode a data split")
    src.add_argument("--data", metavar="NAME", default=None,
                     help="release the splits of dataset NAME ('run': the run's own) to a "
                     ".npz: codes_<split> float32 (N, D), labels_<split>, model_id")
    e.add_argument("--splits", default="train,test", metavar="S[,S]",
                   help="with --data: the splits to release (default train,test)")
    e.add_argument("-n", "--num", type=positive_int, default=None,
                   help="with --split or --data: the first N examples (of each split)")
    e.add_argument("-o", "--output", required=True,
                   help="latents.npy or latents.safetensors; codes.npz with --data")
    e.add_argument("--force", action="store_true", help="overwrite an existing output")
    e.set_defaults(run=run_encode)

    d = sub.add_parser("decode", help="latents -> images (.png grid or .npy levels)",
                       description="Map latents back to data: x = f^-1(z), floored to levels.")
    add_run_args(d)
    d.add_argument("latents", help="a .npy, .safetensors or release .npz file from "
                   "'invertible encode'")
    d.add_argument("--split", choices=["train", "val", "test"], default=None,
                   help="a release .npz: which split's codes (default its only one, else test)")
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

    if args.data is not None:
        return _encode_release(args)
    if args.output.lower().endswith(".npz"):
        raise UsageError("a .npz release needs --data NAME (the dataset whose splits to encode)")
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


def release_split(r: Any, name: str, split: str, data_dir: str | None) -> Any:
    """Split ``split`` of dataset ``name`` ('run' or the run's own: as trained), checked to
    have the run's shape and grey levels."""
    import dataclasses

    from ..data import DatasetError
    from ..training.datasets import load_split

    if name in ("run", r.config.data):
        return load_run_split(r, split, data_dir)
    cfg = dataclasses.replace(r.config, data=name, data_dir=None, download=False)
    try:
        data = load_split(cfg, split, data_dir)
    except (DatasetError, ValueError) as err:
        raise UsageError(f"cannot load dataset '{name}' ({' '.join(str(err).split())})") from None
    shape = tuple(r.data["shape"])
    if data.kind != "image" or data.shape != shape or data.n_bins != r.data.get("n_bins"):
        raise UsageError(f"dataset '{name}' holds {data.kind}s of shape {data.shape} with "
                         f"{data.n_bins} levels; the run takes {shape} with "
                         f"{r.data.get('n_bins')} levels")
    return data


def _encode_release(args: argparse.Namespace) -> int:
    from ..privacy.release import encode_levels, model_id, release_bytes, release_flow
    from ..training.checkpoint import atomic_write_bytes

    out = output_path(args.output, args.force, (".npz",))
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    bad = [s for s in splits if s not in ("train", "val", "test")]
    if not splits or bad or len(set(splits)) != len(splits):
        raise UsageError(f"--splits must name distinct splits among train, val, test; got "
                         f"'{args.splits}'")
    r = open_from_args(args)
    obj = r.objective
    release_flow(obj, "encode")
    parts = {}
    for split in splits:
        data = release_split(r, args.data, split, args.data_dir)
        x, y = data.x, data.y
        if args.num:
            x, y = x[: args.num], (y[: args.num] if y is not None else None)
        if getattr(obj, "conditional", False) and y is None:
            raise UsageError(f"this run is conditional; dataset '{args.data}' has no labels")
        parts[split] = (encode_levels(obj, x, y), y)
    mid = model_id(obj, r.config, r.data)
    atomic_write_bytes(out, release_bytes(mid, parts))
    sizes = ", ".join(f"{len(c)} {s}" for s, (c, _) in parts.items())
    dim = next(iter(parts.values()))[0].shape[1]
    say(f"encoded {sizes} example(s) of '{args.data}' to codes of {dim} dimensions in {out} "
        f"(model_id {mid[:16]}...; only this model's weights decode them)")
    return 0


def _decode_release(args: argparse.Namespace, out: Path) -> int:
    from ..privacy.release import decode_codes, model_id, read_release, release_flow
    from ..training.checkpoint import atomic_write_bytes
    from ..training.plots import save_image_grid

    path = Path(args.latents)
    if not path.is_file():
        raise UsageError(f"codes file {path} does not exist")
    mid, split, codes, labels = read_release(path, args.split)
    r = open_from_args(args)
    obj = r.objective
    release_flow(obj, "decode")
    if mid != model_id(obj, r.config, r.data):
        raise UsageError(f"these codes were made by another model (model_id {mid[:16]}...), "
                         f"not by {r.paths.root} with its {args.checkpoint} "
                         f"{'EMA ' if r.used_ema else ''}weights; only that model decodes them")
    if codes.shape[1] != obj.dims:
        raise UsageError(f"codes_{split} have {codes.shape[1]} dimensions, the model's "
                         f"{obj.dims}")
    y = torch.from_numpy(labels) if getattr(obj, "conditional", False) else None
    k = int(getattr(obj, "context_classes", 0))
    if y is not None and len(y) and (int(y.min()) < 0 or int(y.max()) >= k):
        raise UsageError(f"labels_{split} lie outside the run's classes 0..{k - 1}")
    levels = decode_codes(obj, torch.from_numpy(codes.astype(np.float32)), y).numpy()
    if out.suffix.lower() == ".npy":
        atomic_write_bytes(out, npy_bytes(levels))
    else:
        assert obj.n_bins is not None
        save_image_grid(levels, obj.n_bins, out)
    say(f"decoded {len(levels)} {split} code(s) to {out}")
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
    if args.latents.lower().endswith(".npz"):
        return _decode_release(args, out)
    if args.split is not None:
        raise UsageError("--split is for a release .npz (from 'encode --data')")
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
