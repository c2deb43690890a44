"""``invertible evaluate RUN_DIR``: the task's test figures (bits/dim with a 95% CI, ...)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from ._runs import add_run_args, load_run_split, open_from_args
from .common import UsageError, positive_int, say


def add_parser(sub: Any) -> None:
    p = sub.add_parser("evaluate",
                       help="the task's test figures: bits/dim (95%% CI), accuracy, ...",
                       description="The figures of a trained run on a data split: bits/dim "
                       "with a 95% confidence interval over images and the relative error of "
                       "inverse(forward(x)) for density runs; accuracy (and, for invertible "
                       "classifiers, the reconstruction error from the features) for classify "
                       "runs; reconstruction error for autoencoder runs; for VAE runs the -ELBO, its KL, the "
                       "importance-weighted NLL estimate (-IWAE) and the active latent units.")
    add_run_args(p, data=True)
    p.add_argument("--split", choices=["train", "val", "test"], default="test")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--iwae-k", type=positive_int, default=None, metavar="K",
                   help="VAE runs: importance samples per image for the NLL estimate (default "
                   "the run's, 1000)")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="only the first N examples of the split")
    p.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    r = open_from_args(args)
    split = load_run_split(r, args.split, args.data_dir)
    if args.limit is not None:
        n = min(args.limit, len(split))
        split = dataclasses.replace(split, x=split.x[:n],
                                    y=None if split.y is None else split.y[:n])
    if args.iwae_k is not None:
        if not hasattr(r.objective, "iwae_k"):
            raise UsageError(f"--iwae-k is for VAE runs; this run's task is '{r.config.task}'")
        r.objective.iwae_k = args.iwae_k
    figures = r.objective.evaluate(split, args.batch_size)
    extra = r.objective.diagnostics(split, args.batch_size)
    weights = f"{args.checkpoint} checkpoint, step {r.meta.get('step')}" + (
        ", EMA weights" if r.used_ema else "")
    note: str | None = getattr(r.objective, "evaluation_note", None)
    if note:
        kind = note
    elif getattr(r.objective, "dequant", None) is not None:
        kind = f"{r.config.dequant} dequantization"
    else:
        kind = "images at bin centres" if split.kind == "image" else "continuous data"
    for line in r.objective.describe(figures, args.split):
        say(line)
    task = f"{r.config.task} task" + (", conditional on the class label"
                                      if r.config.conditional else "")
    say(f"({task}; {kind}; {weights})")
    for line in r.objective.describe_diagnostics(extra):
        say(line)
    if args.json:
        say(json.dumps({"split": args.split, "task": r.config.task,
                        "conditional": r.config.conditional, **figures, **extra,
                        "step": r.meta.get("step")}))
    return 0
