"""``invertible evaluate RUN_DIR``: the task's test figures (bits/dim with a 95% CI, ...)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import TYPE_CHECKING, Any

from ._runs import add_run_args, load_run_split, open_from_args
from .common import UsageError, positive_int, say, warn

if TYPE_CHECKING:
    from ..evaluation import RunScore
    from ..training.run import LoadedRun


def add_parser(sub: Any) -> None:
    p = sub.add_parser("evaluate",
                       help="the task's test figures: bits/dim (95%% CI), accuracy, ...",
                       description="The figures of a trained run on a data split: bits/dim "
                       "with a 95% confidence interval over images and the relative error of "
                       "inverse(forward(x)) for density runs; accuracy (and, for invertible "
                       "classifiers, the reconstruction error from the features) for classify "
                       "runs; reconstruction error for autoencoder runs; for VAE runs the -ELBO, its KL, the "
                       "importance-weighted NLL estimate (-IWAE) and the active latent units. "
                       "Image runs that sample, on labelled data, also get a sample-quality "
                       "score: a small classifier trained on the real train split rates "
                       "samples and real test images (mean max class probability, label "
                       "entropy, Inception Score).")
    add_run_args(p, data=True)
    p.add_argument("--split", choices=["train", "val", "test"], default="test")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--iwae-k", type=positive_int, default=None, metavar="K",
                   help="VAE runs: importance samples per image for the NLL estimate (default "
                   "the run's, 1000)")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="only the first N examples of the split")
    p.add_argument("--score-samples", type=positive_int, default=1000, metavar="N",
                   help="image runs with class labels: the sample-quality score of N samples "
                   "and N real test images (default 1000), by a classifier trained on the "
                   "real train split and cached in the run folder")
    p.add_argument("--no-sample-score", action="store_true",
                   help="skip the sample-quality score")
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
    quality = None if args.no_sample_score else _sample_quality(r, args)
    if args.json:
        say(json.dumps({"split": args.split, "task": r.config.task,
                        "conditional": r.config.conditional, **figures, **extra,
                        **({"sample_quality": quality.as_dict()} if quality else {}),
                        "step": r.meta.get("step")}))
    return 0


def _sample_quality(r: LoadedRun, args: argparse.Namespace) -> RunScore | None:
    """Print the sample-quality score of an image run with labels (the run's evaluation
    weights, seeded samples); other runs get one line saying why not, vector runs none."""
    from ..evaluation import cache_stem, score_or_reason

    if r.objective.kind != "image":
        return None
    got = score_or_reason(
        r.objective, r.config.dp_epsilon is not None,
        lambda: (load_run_split(r, "train", args.data_dir),
                 load_run_split(r, "test", args.data_dir)),
        cache_stem(r.paths.root), args.score_samples, warn=warn)
    for line in [got] if isinstance(got, str) else got.lines():
        say(line)
    return None if isinstance(got, str) else got
