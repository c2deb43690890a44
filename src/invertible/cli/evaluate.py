"""``invertible evaluate RUN_DIR``: the task's test figures (bits/dim with a 95% CI, ...)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._runs import add_run_args, load_run_split, open_from_args
from .common import positive_int, say


def add_parser(sub: Any) -> None:
    p = sub.add_parser("evaluate",
                       help="the task's test figures: bits/dim (95%% CI), accuracy, ...",
                       description="The figures of a trained run on a data split: bits/dim "
                       "with a 95% confidence interval over images and the relative error of "
                       "inverse(forward(x)) for density runs; accuracy (and, for invertible "
                       "classifiers, the reconstruction error from the features) for classify "
                       "runs; reconstruction error for autoencoder runs.")
    add_run_args(p, data=True)
    p.add_argument("--split", choices=["train", "val", "test"], default="test")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    r = open_from_args(args)
    split = load_run_split(r, args.split, args.data_dir)
    figures = r.objective.evaluate(split, args.batch_size)
    extra = r.objective.diagnostics(split, args.batch_size)
    weights = f"{args.checkpoint} checkpoint, step {r.meta.get('step')}" + (
        ", EMA weights" if r.used_ema else "")
    if getattr(r.objective, "dequant", None) is not None:
        kind = f"{r.config.dequant} dequantization"
    else:
        kind = "images at bin centres" if split.kind == "image" else "continuous data"
    for line in r.objective.describe(figures, args.split):
        say(line)
    say(f"({r.config.task} task; {kind}; {weights})")
    for line in r.objective.describe_diagnostics(extra):
        say(line)
    if args.json:
        say(json.dumps({"split": args.split, "task": r.config.task, **figures, **extra,
                        "step": r.meta.get("step")}))
    return 0
