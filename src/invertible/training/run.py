"""Opening a run folder: its config, its data description and a model with trained weights."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..models.registry import ModelError, build_model
from .batches import Objective
from .checkpoint import CheckpointError, atomic_write_text, load_checkpoint, strip_prefix
from .config import ConfigError, TrainConfig
from .metrics import read_metrics
from .trainer import RunPaths

__all__ = ["LoadedRun", "build_objective", "open_run", "write_run_config"]

RUN_FORMAT = "invertible-run-1"


def build_objective(cfg: TrainConfig, data: dict[str, Any]) -> Objective:
    """The model named in ``cfg`` for data described by ``data`` (kind, shape, n_bins)."""
    flow = build_model(cfg.model or "", tuple(data["shape"]), **cfg.model_options)
    return Objective(flow, data["kind"], tuple(data["shape"]), data.get("n_bins"), cfg.dequant)


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


def open_run(run_dir: str | Path, which: str = "best", device: str | torch.device = "cpu",
             use_ema: bool = True) -> LoadedRun:
    """Load a run's model. ``which``: "best" (falls back to "latest") or "latest".

    The EMA weights are used when the run kept them and ``use_ema``.
    """
    paths, cfg, data = read_run_config(run_dir)
    stem = paths.best if which == "best" else paths.latest
    if which == "best" and not stem.with_suffix(".json").exists():
        stem = paths.latest
    tensors, meta = load_checkpoint(stem)
    try:
        objective = build_objective(cfg, data)
    except ModelError as e:
        raise CheckpointError(f"cannot rebuild the run's model: {e}") from e
    ema = strip_prefix("ema", tensors)
    used_ema = bool(ema) and use_ema
    state = ema if used_ema else strip_prefix("model", tensors)
    try:
        objective.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {stem} does not match the model ({first})") from e
    objective.to(torch.device(device)).eval()
    return LoadedRun(paths, cfg, data, objective, meta, used_ema)
