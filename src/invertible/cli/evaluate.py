"""``invertible evaluate RUN_DIR``: test bits/dim with a confidence interval, round-trip error."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

import torch

from ._runs import add_run_args, load_run_split, open_from_args
from .common import positive_int, say


def add_parser(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="test bits/dim (95%% CI) and round-trip error",
                       description="Bits/dim of a trained run on a data split, with a 95% "
                       "confidence interval over images, and the relative error of "
                       "inverse(forward(x)).")
    add_run_args(p, data=True)
    p.add_argument("--split", choices=["train", "val", "test"], default="test")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    p.set_defaults(run=run)


@torch.no_grad()
def round_trip_error(objective, split, batch_size: int) -> tuple[float, float]:
    """Max and mean of ||inverse(forward(x)) - x|| / ||x|| per example (x at bin centres)."""
    device = next(objective.parameters()).device
    errs = []
    for start in range(0, len(split), batch_size):
        xb = split.x[start : start + batch_size].to(device)
        x = objective.center(xb) if objective.kind == "image" else xb.float()
        z, _ = objective.flow.bijection(x)
        back, _ = objective.flow.bijection.inverse(z)
        diff = (back - x).flatten(1).norm(dim=1)
        errs.append((diff / x.flatten(1).norm(dim=1).clamp_min(1e-30)).double().cpu())
    e = torch.cat(errs)
    return float(e.max()), float(e.mean())


def run(args: argparse.Namespace) -> int:
    from ..training.trainer import evaluate_bpd

    r = open_from_args(args)
    split = load_run_split(r, args.split, args.data_dir)
    if list(split.shape) != list(r.data["shape"]):
        from .common import UsageError

        raise UsageError(f"data shape {split.shape} differs from the run's "
                         f"{tuple(r.data['shape'])}")
    device = next(r.objective.parameters()).device
    mean, std, n, _ = evaluate_bpd(r.objective, split, args.batch_size, device)
    ci = 1.96 * std / math.sqrt(max(n, 1))
    err_max, err_mean = round_trip_error(r.objective, split, args.batch_size)
    weights = f"{args.checkpoint} checkpoint, step {r.meta.get('step')}" + (
        ", EMA weights" if r.used_ema else "")
    kind = f"{r.config.dequant} dequantization" if split.kind == "image" else "continuous"
    say(f"{args.split} bits/dim: {mean:.4f} ± {ci:.4f} (95% CI over {n} examples; {kind}; "
        f"{weights})")
    say(f"round-trip relative error |inverse(forward(x)) - x| / |x|: max {err_max:.2e}, "
        f"mean {err_mean:.2e}")
    if args.json:
        say(json.dumps({"split": args.split, "bits_per_dim": mean, "ci95": ci, "n": n,
                        "round_trip_max": err_max, "round_trip_mean": err_mean,
                        "step": r.meta.get("step")}))
    return 0
