"""``invertible interpolate RUN_DIR -o FILE.png``: latent interpolation between test images."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch

from ._runs import add_run_args, flow_of, load_run_split, open_from_args
from .common import UsageError, output_path, positive_int, say


def add_parser(sub: Any) -> None:
    p = sub.add_parser("interpolate", help="latent interpolation between pairs of test images",
                       description="Encode pairs of test images, interpolate linearly between "
                       "their latents and decode: one row per pair, the real images at both "
                       "ends (as in Figure 4 of the i-ConvNet paper).")
    add_run_args(p, data=True)
    p.add_argument("--pairs", type=positive_int, default=6, help="rows (pairs of images)")
    p.add_argument("--steps", type=positive_int, default=8,
                   help="images per row, ends included (>= 2)")
    p.add_argument("--split", choices=["train", "val", "test"], default="test")
    p.add_argument("--seed", type=int, default=0, help="which pairs are drawn")
    p.add_argument("-o", "--output", required=True, help="FILE.png")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.set_defaults(run=run)


@torch.no_grad()
def interpolate_rows(objective, a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    """Levels ``(P, C, H, W)`` x 2 -> ``(P * steps, C, H, W)`` levels, row by row."""
    bij = objective.flow.bijection
    za, _ = bij(objective.center(a))
    zb, _ = bij(objective.center(b))
    t = torch.linspace(0, 1, steps, dtype=za.dtype, device=za.device)
    shape = (1, steps) + (1,) * (za.dim() - 1)
    z = (1 - t.view(shape)) * za[:, None] + t.view(shape) * zb[:, None]
    x, _ = bij.inverse(z.flatten(0, 1))
    return objective.to_levels(x)


def run(args: argparse.Namespace) -> int:
    from ..training.plots import save_image_grid

    out = output_path(args.output, args.force, (".png",))
    if args.steps < 2:
        raise UsageError("--steps must be at least 2 (the two ends)")
    r = open_from_args(args)
    flow_of(r, "interpolate")
    if r.objective.kind != "image":
        raise UsageError("interpolate needs an image model; this run is on vector data")
    split = load_run_split(r, args.split, args.data_dir)
    if len(split) < 2 * args.pairs:
        raise UsageError(f"the {args.split} split has {len(split)} images, fewer than "
                         f"2 x --pairs {args.pairs}")
    g = torch.Generator().manual_seed(args.seed)
    idx = torch.randperm(len(split), generator=g)[: 2 * args.pairs]
    device = next(r.objective.parameters()).device
    a = split.x[idx[: args.pairs]].to(device)
    b = split.x[idx[args.pairs :]].to(device)
    levels = interpolate_rows(r.objective, a, b, args.steps).cpu().numpy()
    assert r.objective.n_bins is not None  # an image objective (checked above) has its levels
    save_image_grid(np.asarray(levels), r.objective.n_bins, out, nrow=args.steps)
    say(f"wrote {args.pairs} interpolations of {args.steps} images to {out}")
    return 0
