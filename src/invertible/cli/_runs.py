"""Helpers shared by the commands that open a finished run."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from .common import resolve_device, warn

if TYPE_CHECKING:
    from ..distributions import Flow
    from ..training.datasets import Split
    from ..training.objectives.autoencoder import AutoencoderObjective
    from ..training.run import LoadedRun


def add_run_args(p: Any, *, data: bool = False) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by 'invertible train'")
    p.add_argument("--checkpoint", choices=["best", "latest"], default="best",
                   help="which checkpoint to load (default best by validation bits/dim)")
    p.add_argument("--no-ema", action="store_true", help="use raw weights, not the EMA")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    if data:
        p.add_argument("--data-dir", default=None, help="where the run's dataset lies now")


def open_from_args(args: argparse.Namespace) -> LoadedRun:
    from ..training.run import open_run

    return open_run(args.run_dir, args.checkpoint, resolve_device(args.device),
                    use_ema=not args.no_ema, warn=warn)


def load_run_split(run: LoadedRun, split: str, data_dir: str | None) -> Split:
    """The run's dataset split ``split``, checked against the shape the run was trained on."""
    from ..training.datasets import load_split
    from .common import UsageError

    data = load_split(run.config, split, data_dir)
    if list(data.shape) != list(run.data["shape"]):
        raise UsageError(f"data shape {data.shape} differs from the run's "
                         f"{tuple(run.data['shape'])}")
    return data


def flow_of(run: LoadedRun, command: str) -> Flow:
    """The run's flow, for commands that map data to latents; others get a one-line error."""
    from ..training.objectives import TaskError

    flow = getattr(run.objective, "flow", None)
    if flow is None:
        raise TaskError(f"'{command}' needs a run whose model is a flow; this run's task is "
                        f"'{run.config.task}'")
    return flow


def autoencoder_of(run: LoadedRun, command: str) -> AutoencoderObjective:
    """The run's autoencoder objective; a run of another task gets a one-line error."""
    from ..training.objectives import TaskError
    from ..training.objectives.autoencoder import AutoencoderObjective

    if not isinstance(run.objective, AutoencoderObjective):
        raise TaskError(f"'{command}' needs an autoencoder run (train --task autoencoder); "
                        f"this run's task is '{run.config.task}'")
    return run.objective
