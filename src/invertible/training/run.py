"""Opening a run folder: its config, its data description and an objective with trained weights."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..models.registry import ModelError
from .checkpoint import CheckpointError, atomic_write_text, load_checkpoint, strip_prefix
from .config import ConfigError, TrainConfig
from .metrics import read_metrics
from .objectives import Objective, build_objective
from .paths import RunPaths

__all__ = ["LoadedRun", "eval_state", "load_weights", "open_run", "read_run_config", "write_run_config"]

RUN_FORMAT = "invertible-run-1"


def write_run_config(paths: RunPaths, cfg: TrainConfig, data: dict[str, Any],
                     world_size: int) -> None:
    doc = {"format": RUN_FORMAT, "train": cfg.to_dict(), "data": data, "world_size": world_size}
    atomic_write_text(paths.config, json.dumps(doc, indent=2, sort_keys=True))


@dataclass
class LoadedRun:
    paths: RunPaths
    config: TrainConfig
    data: dict[str, Any]
    objective: Objective
    meta: dict[str, Any]
    used_ema: bool

    @property
    def metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.paths.metrics)


def read_run_config(run_dir: str | Path) -> tuple[RunPaths, TrainConfig, dict[str, Any]]:
    paths = RunPaths(Path(run_dir))
    if not paths.root.is_dir():
        raise CheckpointError(f"run folder {paths.root} does not exist")
    if not paths.config.is_file():
        raise CheckpointError(f"{paths.root} is not a run folder (no config.json)")
    try:
        doc = json.loads(paths.config.read_text("utf-8"))
        if doc.get("format") != RUN_FORMAT:
            raise ValueError("unknown format")
        cfg = TrainConfig.from_dict(doc["train"])
        data = doc["data"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, ConfigError) as e:
        raise CheckpointError(f"{paths.config} is corrupt ({e})") from e
    return paths, cfg, data


def load_weights(paths: RunPaths, which: str = "best",
                 warn: Callable[[str], None] | None = None) -> tuple[Path, dict, dict]:
    """The tensors and meta of checkpoint ``which`` ("best" or "latest") of a run.

    If that checkpoint is missing or fails its checksum and the other one is sound, the
    other is used with a warning through ``warn``; if both fail, ``CheckpointError``.
    Returns ``(stem, tensors, meta)``.
    """
    first, other = (paths.best, paths.latest) if which == "best" else (paths.latest, paths.best)
    try:
        tensors, meta = load_checkpoint(first)
        return first, tensors, meta
    except CheckpointError as e:
        if which == "best" and not first.with_suffix(".json").exists() \
                and not first.with_suffix(".safetensors").exists():
            # A run stopped before its first validation has no "best" yet: not an error.
            tensors, meta = load_checkpoint(other)
            return other, tensors, meta
        try:
            tensors, meta = load_checkpoint(other)
        except CheckpointError:
            raise e from None
        if warn is not None:
            warn(f"warning: {e}; using the {other.name} checkpoint instead")
        return other, tensors, meta


def eval_state(tensors: dict[str, torch.Tensor],
               use_ema: bool = True) -> tuple[dict[str, torch.Tensor], bool]:
    """The objective's state for evaluation from checkpoint tensors: the EMA weights when
    the run kept them and ``use_ema``, else the raw ones. Returns ``(state, used_ema)``."""
    ema = strip_prefix("ema", tensors)
    if ema and use_ema:
        return ema, True
    return strip_prefix("model", tensors), False


def open_run(run_dir: str | Path, which: str = "best", device: str | torch.device = "cpu",
             use_ema: bool = True, warn: Callable[[str], None] | None = None) -> LoadedRun:
    """Load a run's objective with trained weights. ``which``: "best" or "latest".

    A missing or corrupt checkpoint falls back to the other one (see ``load_weights``). The
    EMA weights are used when the run kept them and ``use_ema``.
    """
    paths, cfg, data = read_run_config(run_dir)
    stem, tensors, meta = load_weights(paths, which, warn)
    try:
        objective = build_objective(cfg, data)
    except (ModelError, ConfigError) as e:
        raise CheckpointError(f"cannot rebuild the run's model: {e}") from e
    state, used_ema = eval_state(tensors, use_ema)
    try:
        objective.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {stem} does not match the model ({first})") from e
    objective.to(torch.device(device)).eval()
    return LoadedRun(paths, cfg, data, objective, meta, used_ema)
