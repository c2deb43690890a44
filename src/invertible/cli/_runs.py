"""Helpers shared by the commands that open a finished run."""

from __future__ import annotations

import argparse
from typing import Any

from .common import resolve_device


def add_run_args(p: Any, *, data: bool = False) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by 'invertible train'")
    p.add_argument("--checkpoint", choices=["best", "latest"], default="best",
                   help="which checkpoint to load (default best by validation bits/dim)")
    p.add_argument("--no-ema", action="store_true", help="use raw weights, not the EMA")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    if data:
        p.add_argument("--data-dir", default=None, help="where the run's dataset lies now")


def open_from_args(args: argparse.Namespace):
    from ..training.run import open_run

    return open_run(args.run_dir, args.checkpoint, resolve_device(args.device),
                    use_ema=not args.no_ema)


def load_run_split(run, split: str, data_dir: str | None):
    from ..training.batches import load_split

    return load_split(run.config, split, data_dir)
