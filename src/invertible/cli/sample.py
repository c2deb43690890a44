"""``invertible sample RUN_DIR -n N --temperature T -o FILE.png``."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from ._runs import add_run_args, open_from_args
from .common import UsageError, npy_bytes, output_path, positive_float, positive_int, say


def add_parser(sub: Any) -> None:
    p = sub.add_parser("sample", help="draw samples into a PNG grid (or .npy)",
                       description="Draw samples from a trained run. Temperature < 1 scales the "
                       "base distribution's standard deviation for sharper samples.")
    add_run_args(p)
    p.add_argument("-n", "--num", type=positive_int, default=64,
                   help="number of samples (default 64); a conditional run without --label "
                   "draws a class grid, row k = class k, so N is rounded down to whole rows")
    p.add_argument("--temperature", "-t", type=positive_float, default=1.0)
    p.add_argument("--seed", type=int, default=None, help="fix the samples (default random)")
    p.add_argument("--label", type=int, default=None, metavar="K",
                   help="draw class K only: runs trained with --conditional, and flow "
                   "classifiers (train --task classify with a flow model)")
    p.add_argument("-o", "--output", required=True, help="FILE.png (grid) or FILE.npy")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..training.checkpoint import atomic_write_bytes
    from ..training.objectives import seeded_samples
    from ..training.plots import save_image_grid, save_scatter

    out = output_path(args.output, args.force, (".png", ".npy"))
    if args.num > 100_000:
        raise UsageError(f"-n {args.num} is too many samples for one file (at most 100000)")
    r = open_from_args(args)
    labels = None if args.label is None else torch.full((args.num,), args.label)
    # A conditional run draws its classes in turn (row k = class k): whole rows only.
    classes = getattr(r.objective, "context_classes", 0) if labels is None else 0
    n = max(1, args.num // classes) * classes if classes else args.num
    x = seeded_samples(r.objective, n, args.temperature, args.seed, labels).numpy()
    if out.suffix.lower() == ".npy":
        atomic_write_bytes(out, npy_bytes(x))
    elif r.objective.kind == "image":
        assert r.objective.n_bins is not None  # image objectives always have their levels
        save_image_grid(x, r.objective.n_bins, out, nrow=n // classes if classes else None)
    else:
        save_scatter(x, out, title=f"{n} samples, T={args.temperature}")
    of = "" if args.label is None else f" of class {args.label}"
    if classes:
        of = f", {n // classes} of each of the {classes} classes in class order"
    say(f"wrote {n} samples{of} (temperature {args.temperature}) to {out}")
    return 0
