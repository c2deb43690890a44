"""``invertible info RUN_DIR``: the model, its size, the run's settings and last metrics."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ._runs import add_run_args, open_from_args
from .common import say

if TYPE_CHECKING:
    from torch import nn


def add_parser(sub: Any) -> None:
    p = sub.add_parser("info", help="model summary, parameter count and last metrics",
                       description="Describe a run: model, parameters, data, settings, "
                       "checkpoint and the latest metrics.")
    add_run_args(p)
    p.add_argument("--full", action="store_true", help="print the whole module tree")
    p.set_defaults(run=run)


def _count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def run(args: argparse.Namespace) -> int:
    r = open_from_args(args)
    cfg, obj = r.config, r.objective
    say(f"run: {r.paths.root}")
    opts = ", ".join(f"{k}={v}" for k, v in sorted(cfg.model_options.items())) or "defaults"
    flow = getattr(obj, "flow", None)
    dequant = getattr(obj, "dequant", None)
    say(f"task: {cfg.task}" + (f" ({', '.join(f'{k}={v}' for k, v in cfg.task_options.items())})"
                               if cfg.task_options else "")
        + (f", conditional on the class label ({r.data.get('n_classes')} classes)"
           if cfg.conditional else ""))
    say(f"model: {cfg.model} ({opts}); {_count(obj):,} parameters"
        + (f", {_count(dequant):,} of them in the dequantizer" if dequant is not None
           and _count(dequant) else ""))
    shape = "x".join(map(str, r.data["shape"]))
    levels = f", {r.data['n_bins']} levels" if r.data.get("n_bins") else ""
    say(f"data: {cfg.data} ({r.data['kind']} {shape}{levels}); dequantization {cfg.dequant}")
    budget = ", ".join(f"{k} {v}" for k, v in (("epochs", cfg.epochs), ("steps", cfg.steps),
                                               ("max-time", cfg.max_time)) if v)
    say(f"training: {budget}; batch {cfg.batch_size} x {r.meta.get('world_size', 1)} "
        f"process(es); lr {cfg.lr:g} {cfg.schedule}, warm-up {cfg.warmup}; seed {cfg.seed}"
        + (f"; EMA {cfg.ema}" if cfg.ema else ""))
    pv = r.meta.get("privacy")
    if pv:
        say(f"privacy: DP-SGD, ({pv['epsilon_spent']:.3g}, {pv['delta']:g})-DP at this "
            f"checkpoint (target epsilon {pv['epsilon_target']:g}; noise multiplier "
            f"{pv['noise_multiplier']:.4g}, sample rate {pv['sample_rate']:.4g}, clip "
            f"{pv['max_grad_norm']:g}, {pv['steps']} of {pv['steps_planned']} steps, "
            f"{pv['accountant']} accountant)")
    else:
        say("privacy: none (not trained with --dp-epsilon; the weights are the key to its "
            "codes)")
    t = r.meta.get("trainer", {})
    say(f"checkpoint: {args.checkpoint}, step {t.get('step')}, epoch {t.get('epoch')}, "
        f"{t.get('elapsed', 0):.0f} s trained" + (", EMA weights" if r.used_ema else ""))
    say("layers:")
    if args.full or flow is None:
        say(str(obj if flow is None else flow))
    else:
        for name, child in flow.bijection.named_children():
            for sub_name, sub in (child.named_children() if name == "layers" else [(name, child)]):
                say(f"  {sub_name:>4}  {type(sub).__name__:<28} {_count(sub):>10,}")
    recs = r.metrics
    last = {}
    for rec in recs:
        for key, value in rec.items():
            if key.startswith(("train_", "val_", "test_")) and not key.endswith("_std") \
                    or key in ("images_per_s", "lr"):
                last[key] = (rec["step"], value)
    if last:
        say("last metrics: " + ", ".join(
            f"{k} {v:.4g} (step {s})" if isinstance(v, float) else f"{k} {v} (step {s})"
            for k, (s, v) in last.items()))
    events = [rec for rec in recs if rec.get("event") == "nonfinite"]
    if events:
        say(f"non-finite steps skipped: {len(events)}")
    return 0
