"""``invertible invert RUN -o inversion.png``: images -> final feature map -> images, for a
classifier whose body is a bijection (ladder steps checkerboard/nn/avgpool, or FlowGMM)."""

from __future__ import annotations

import argparse
from typing import Any

from ._runs import add_run_args, load_run_split, open_from_args
from .common import output_path, positive_int, say


def add_parser(sub: Any) -> None:
    p = sub.add_parser("invert", help="features -> images for an invertible classifier",
                       description="Take images of a classify run to the classifier's final "
                       "feature map (the input of its linear head) and back through the exact "
                       "inverse; write original | reconstruction | difference and print the "
                       "relative reconstruction error |x' - x| / |x|. Nothing before the head "
                       "is thrown away when the error is at the level of float rounding.")
    add_run_args(p, data=True)
    p.add_argument("--split", choices=["train", "val", "test"], default="test")
    p.add_argument("-n", "--num", type=positive_int, default=8,
                   help="images shown in the figure (default 8)")
    p.add_argument("--all", action="store_true",
                   help="also measure the error on every image of the split")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--float64", action="store_true",
                   help="run the round trip in float64 (the weights are cast): what is lost in "
                   "float32 is rounding, amplified by the network's conditioning")
    p.add_argument("-o", "--output", required=True, help="inversion.png")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..training.objectives import ClassifierObjective, FlowGMMObjective, TaskError
    from ..training.objectives.classify import write_inversion
    from ..training.objectives.inversion import round_trip_errors

    out = output_path(args.output, args.force, (".png",))
    r = open_from_args(args)
    obj = r.objective
    if not isinstance(obj, ClassifierObjective | FlowGMMObjective):
        raise TaskError(f"'invert' needs a classify run (train --task classify); this run's "
                        f"task is '{r.config.task}'")
    if args.float64:
        obj = obj.double()
    split = load_run_split(r, args.split, args.data_dir)
    _, errs = write_inversion(obj, split.x[: min(args.num, len(split), 32)], out)
    if args.all:
        errs = round_trip_errors(lambda rows: obj.center(rows.to(obj.device)), obj.round_trip,
                                 split, args.batch_size)
    precision = "float64" if args.float64 else "float32"
    say(f"relative reconstruction error ({precision}) over {len(errs)} {args.split} images: "
        f"median {float(errs.median()):.2e}, max {float(errs.max()):.2e}")
    say(f"wrote {out}")
    return 0
