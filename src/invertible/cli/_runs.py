"""Helpers shared by the commands that open a finished run."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from .common import resolve_device, warn

if TYPE_CHECKING:
    from ..distributions import Flow
    from ..training.datasets import Split
    from ..training.objectives.autoencoder import AutoencoderObjective
    from ..training.objectives.vae import VAEObjective
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
    trained = run.data.get("n_classes")
    if trained and (data.n_classes or 0) > trained:
        raise UsageError(f"the data has {data.n_classes} classes, the run was trained on "
                         f"{trained}")
    return data


def flow_of(run: LoadedRun, command: str) -> Flow:
    """The run's flow, for commands that map data to latents; others get a one-line error."""
    from ..training.objectives import TaskError

    flow = getattr(run.objective, "flow", None)
    if flow is None:
        raise TaskError(f"'{command}' needs a run whose model is a flow; this run's task is "
                        f"'{run.config.task}'")
    if flow.conditional:
        raise TaskError(f"'{command}' takes no class labels, and this run is conditional "
                        "(train --conditional); in Python, flow.bijection(x, context=c) encodes "
                        "and flow.bijection.inverse(z, context=c) decodes")
    return flow


def autoencoder_of(run: LoadedRun, command: str) -> AutoencoderObjective | VAEObjective:
    """The run's autoencoder (invertible or VAE) objective, which maps images to codes
    (``encode_codes``) and back (``decode_codes``); other tasks get a one-line error."""
    from ..training.objectives import TaskError
    from ..training.objectives.autoencoder import AutoencoderObjective
    from ..training.objectives.vae import VAEObjective

    if not isinstance(run.objective, AutoencoderObjective | VAEObjective):
        raise TaskError(f"'{command}' needs an autoencoder run (train --task autoencoder or "
                        f"--task vae); this run's task is '{run.config.task}'")
    return run.objective
