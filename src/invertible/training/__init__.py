"""Training: the loop (``Trainer``), the task objectives, run folders and checkpoints.

Write a new task as an ``Objective`` subclass and ``register_objective`` it; the loop needs
no change. ``open_run`` loads a trained run folder.
"""

from .config import ConfigError, TrainConfig
from .datasets import Split, load_split
from .loop import Trainer, TrainSummary
from .objectives import (
    AutoencoderObjective,
    ClassifierObjective,
    DataSpec,
    DensityObjective,
    FlowGMMObjective,
    Objective,
    TaskError,
    VAEObjective,
    build_objective,
    register_objective,
    task_names,
    unregister_objective,
)
from .run import LoadedRun, open_run

__all__ = [
    "AutoencoderObjective",
    "ClassifierObjective",
    "ConfigError",
    "DataSpec",
    "DensityObjective",
    "FlowGMMObjective",
    "LoadedRun",
    "Objective",
    "Split",
    "TaskError",
    "TrainConfig",
    "TrainSummary",
    "Trainer",
    "VAEObjective",
    "build_objective",
    "load_split",
    "open_run",
    "register_objective",
    "task_names",
    "unregister_objective",
]
