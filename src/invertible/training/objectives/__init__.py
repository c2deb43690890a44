"""Training objectives, one per task, and the registry that ``--task`` names.

``register_objective(name, factory)`` adds a task; ``factory(cfg, data, model)`` gets the
run's ``TrainConfig``, its ``DataSpec`` and the built model (or None when the task builds
its own) and returns an ``Objective``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..config import ConfigError
from .autoencoder import AutoencoderObjective
from .base import EVAL_SEED, SAMPLE_SEED, DataSpec, Objective, TaskError, fixed_rng, seeded_samples
from .classify import ClassifierObjective
from .codec import CodecObjective
from .density import DensityObjective, round_trip_error
from .flowgmm import FlowGMMObjective
from .vae import VAEObjective

__all__ = [
    "EVAL_SEED",
    "SAMPLE_SEED",
    "AutoencoderObjective",
    "ClassifierObjective",
    "CodecObjective",
    "DataSpec",
    "DensityObjective",
    "FlowGMMObjective",
    "Objective",
    "ObjectiveFactory",
    "TaskError",
    "VAEObjective",
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


def _check_task_options(opts: dict[str, Any], allowed: set[str], what: str) -> None:
    unknown = sorted(set(opts) - allowed)
    if unknown:
        raise TaskError(f"{what} has no option {', '.join(unknown)} "
                        f"(it takes {', '.join(sorted(allowed))})")


def _flow_model(cfg: Any, data: DataSpec, context_features: int = 0) -> Any:
    """The run's flow from the model registry; the ladder classifier is not a flow.

    ``context_features > 0`` builds a conditional flow (``--conditional``).
    """
    from ...models.registry import build_model

    if cfg.model == "convnet":
        raise TaskError(f"model 'convnet' is the ladder classifier, for --task classify, not "
                        f"--task {cfg.task}")
    if "context_features" in cfg.model_options:
        raise TaskError("context_features is not a --model-option: train --conditional sets "
                        "it to the number of classes")
    extra = {"context_features": context_features} if context_features else {}
    return build_model(cfg.model or "", data.shape, **cfg.model_options, **extra)


def _density(cfg: Any, data: DataSpec) -> Objective:
    if cfg.task_options:
        raise TaskError(f"the density task has no option {', '.join(sorted(cfg.task_options))}"
                        " (--code-size is for --task autoencoder)")
    if not getattr(cfg, "conditional", False):
        return DensityObjective(_flow_model(cfg, data), data, cfg.dequant)
    if not data.n_classes or data.n_classes < 2:
        raise TaskError("--conditional needs labelled data with at least 2 classes; this "
                        "dataset has no class labels")
    # p(x | y): the one-hot label is the context of every conditioner network.
    flow = _flow_model(cfg, data, context_features=data.n_classes)
    return DensityObjective(flow, data, cfg.dequant, conditional=True)


def _classify(cfg: Any, data: DataSpec) -> Objective:
    """The ladder CNN (``--model convnet``), or FlowGMM around any flow model."""
    from ...distributions import ClassGaussianMixture, Flow
    from ...models.classifier import build_convnet
    from .classify import labelled_spec

    n_classes = labelled_spec(data, "the classify task")
    opts = dict(cfg.task_options)
    if cfg.model == "convnet":
        if opts:
            raise TaskError(f"the convnet classifier has no task option "
                            f"{', '.join(sorted(opts))}")
        model = build_convnet(data.shape, n_classes, **cfg.model_options)
        return ClassifierObjective(model, data)
    _check_task_options(opts, {"mean_scale", "w_class"}, "a flow classifier")
    scale = opts.get("mean_scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale < 1e3:
        raise TaskError(f"task option mean_scale must be a number in (0, 1000), got {scale!r}")
    flow = _flow_model(cfg, data)
    prior = ClassGaussianMixture(flow.base.event_shape, n_classes, float(scale), seed=cfg.seed)
    return FlowGMMObjective(Flow(flow.bijection, prior), data, cfg.dequant,
                            opts.get("w_class", 0.0))


def _autoencoder(cfg: Any, data: DataSpec) -> Objective:
    import torch

    from ...models.autoencoder import InvertibleAutoencoder, with_pca_head

    opts = dict(cfg.task_options)
    _check_task_options(opts, {"code_size", "w_mse", "w_code", "w_tail", "w_nll", "nested",
                               "pca_head"}, "the autoencoder task")
    if data.kind != "image":
        raise TaskError("the autoencoder task needs image data")
    k = opts.pop("code_size", None)
    if k is None:
        raise TaskError("the autoencoder task needs a code size: --code-size K")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= data.dims:
        raise TaskError(f"--code-size must be an integer in [1, {data.dims}] (the data "
                        f"dimension), got {k}")
    pca_head = opts.pop("pca_head", True)
    if not isinstance(pca_head, bool):
        raise TaskError(f"task option pca_head must be true or false, got {pca_head!r}")
    flow = _flow_model(cfg, data)
    if pca_head:
        # The head's outputs are in variance order already: keep its order.
        flow, _ = with_pca_head(flow)
        ae = InvertibleAutoencoder(flow, k, order=torch.arange(data.dims))
    else:
        ae = InvertibleAutoencoder(flow, k)
    return AutoencoderObjective(ae, data, cfg.dequant, **opts)


def _vae(cfg: Any, data: DataSpec) -> Objective:
    """The Flow-VAE (``--model vae``): model options size it and pick the posterior."""
    from ...models.vae import VAE

    if cfg.model not in (None, "", "vae"):
        raise TaskError(f"the vae task trains its own model (--model vae), not "
                        f"'{cfg.model}'")
    if data.kind != "image" or data.n_bins is None:
        raise TaskError("the vae task needs image data")
    opts = dict(cfg.task_options)
    _check_task_options(opts, {"kl_warmup", "free_bits", "iwae_k"}, "the vae task")
    model_opts = dict(cfg.model_options)
    allowed = {"latent", "hidden", "width", "posterior", "steps", "flow_hidden", "likelihood"}
    unknown = sorted(set(model_opts) - allowed)
    if unknown:
        raise TaskError(f"the VAE has no model option {', '.join(unknown)} (it takes "
                        f"{', '.join(sorted(allowed))})")
    iwae_k = opts.pop("iwae_k", 1000)
    if isinstance(iwae_k, bool) or not isinstance(iwae_k, int) or iwae_k < 1:
        raise TaskError(f"task option iwae_k must be an integer >= 1, got {iwae_k!r}")
    try:
        vae = VAE(data.shape, n_bins=data.n_bins, **model_opts)  # type: ignore[arg-type]
    except (TypeError, ValueError) as err:
        raise TaskError(str(err)) from None
    return VAEObjective(vae, data, iwae_k=iwae_k, **opts)


def _codec(cfg: Any, data: DataSpec) -> Objective:
    """The integer discrete flow (``--model idf``), sized by its model options."""
    from ...codec.integer_flow import IntegerFlow
    from ...models.registry import ModelError, check_int

    if cfg.model not in (None, "", "idf"):
        raise TaskError(f"the codec task trains its own model (--model idf), not '{cfg.model}'")
    if data.kind != "image" or data.n_bins is None:
        raise TaskError("the codec task needs image data")
    if cfg.task_options:
        raise TaskError(f"the codec task has no option {', '.join(sorted(cfg.task_options))}")
    opts = {**IntegerFlow.options(), **cfg.model_options}
    unknown = sorted(set(opts) - set(IntegerFlow.options()))
    if unknown:
        raise TaskError(f"the integer flow has no model option {', '.join(unknown)} (it takes "
                        f"{', '.join(sorted(IntegerFlow.options()))})")
    try:
        for name, value in opts.items():
            check_int("idf", name, value, minimum=0 if name == "seed" else 1)
        if opts["levels"] < 2:
            raise ModelError("idf: levels must be at least 2 (the first scale squeezes)")
        flow = IntegerFlow(data.shape, data.n_bins, **opts)  # type: ignore[arg-type]
    except ValueError as err:
        raise TaskError(str(err)) from None
    return CodecObjective(flow, data)


register_objective("density", _density)
register_objective("autoencoder", _autoencoder)
register_objective("classify", _classify)
register_objective("vae", _vae)
register_objective("codec", _codec)
