"""Training objectives, one per task, and the registry that ``--task`` names.

``register_objective(name, factory)`` adds a task; ``factory(cfg, data, model)`` gets the
run's ``TrainConfig``, its ``DataSpec`` and the built model (or None when the task builds
its own) and returns an ``Objective``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..config import ConfigError
from .base import EVAL_SEED, SAMPLE_SEED, DataSpec, Objective, TaskError, fixed_rng, seeded_samples
from .density import DensityObjective, round_trip_error

__all__ = [
    "EVAL_SEED",
    "SAMPLE_SEED",
    "DataSpec",
    "DensityObjective",
    "Objective",
    "ObjectiveFactory",
    "TaskError",
    "build_objective",
    "fixed_rng",
    "register_objective",
    "round_trip_error",
    "seeded_samples",
    "task_names",
    "unregister_objective",
]

ObjectiveFactory = Callable[[Any, DataSpec], Objective]
_TASKS: dict[str, ObjectiveFactory] = {}


def register_objective(name: str, factory: ObjectiveFactory, *, replace: bool = False) -> None:
    """Make ``--task name`` build ``factory(cfg, data)`` (a ``TrainConfig``, a ``DataSpec``)."""
    if name in _TASKS and not replace:
        raise ValueError(f"task '{name}' is already registered")
    _TASKS[name] = factory


def unregister_objective(name: str) -> None:
    _TASKS.pop(name, None)


def task_names() -> list[str]:
    return sorted(_TASKS)


def build_objective(cfg: Any, data: DataSpec | dict[str, Any]) -> Objective:
    """The objective of ``cfg.task`` for ``data`` (a ``DataSpec`` or a run's data record)."""
    spec = data if isinstance(data, DataSpec) else DataSpec.from_info(data)
    factory = _TASKS.get(cfg.task)
    if factory is None:
        raise ConfigError(f"unknown task '{cfg.task}' (choose from {', '.join(task_names())})")
    return factory(cfg, spec)


def _density(cfg: Any, data: DataSpec) -> Objective:
    from ...models.registry import build_model

    flow = build_model(cfg.model or "", data.shape, **cfg.model_options)
    return DensityObjective(flow, data, cfg.dequant)


register_objective("density", _density)
