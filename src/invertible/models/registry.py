"""Named model builders for the command line: ``build_model("glow", (1, 28, 28), depth=8)``.

Builders are imported lazily, so that a model family being absent (or slow to import)
never breaks the others. Every builder returns an ``invertible.Flow`` whose input is data
in [0, 1] for images (shape ``(C, H, W)``) or raw vectors (shape ``(D,)``).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..core import Bijection, Sequential
from ..distributions import Flow, StandardNormal
from ..layers.elementwise import ElementwiseAffine, SneakyReLU
from ..layers.preprocessing import LogitTransform

__all__ = [
    "MODELS",
    "ModelError",
    "ModelSpec",
    "build_model",
    "model_lrs",
    "model_names",
    "register_model",
]


class ModelError(ValueError):
    """A model name, option or data shape the registry cannot honour (one-line message)."""


@dataclass(frozen=True)
class ModelSpec:
    """How to build one named model.

    ``builder`` is a callable or ``"module:function"`` (imported on first use). ``kinds``
    says which data it accepts: ``"image"`` (``(C, H, W)`` in [0, 1]) and/or ``"vector"``
    (``(D,)``). ``shape_arg`` is how the data shape is passed: ``"shape"`` (the tuple) or
    ``"dim"`` (the vector length). ``defaults`` are options used when the caller gives none.
    """

    name: str
    builder: str | Callable[..., Flow]
    kinds: frozenset[str]
    description: str
    shape_arg: str = "shape"
    defaults: dict[str, Any] = field(default_factory=dict)
    lr: float | None = None  # peak learning rate of `invertible train` when --lr is not given

    def resolve(self) -> Callable[..., Flow]:
        if callable(self.builder):
            return self.builder
        module, _, func = self.builder.partition(":")
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            raise ModelError(f"model '{self.name}' is not available ({e})") from e
        try:
            return getattr(mod, func)
        except AttributeError as e:
            raise ModelError(f"model '{self.name}' is not available: {module} has no {func}") from e


def build_elementwise(shape: Sequence[int], depth: int = 2, image: bool = True) -> Flow:
    """A factorised baseline: every dimension gets its own 1-D flow, no interactions.

    Useful as the "independent pixels" reference point and as a fast model for tests.
    """
    if depth < 1:
        raise ModelError(f"elementwise: depth must be >= 1, got {depth}")
    shape = tuple(shape)
    layers: list[Bijection] = [LogitTransform(0.05)] if image else []
    for _ in range(depth):
        layers += [ElementwiseAffine(shape), SneakyReLU(0.5)]
    layers.append(ElementwiseAffine(shape))
    return Flow(Sequential(*layers), StandardNormal(shape))


MODELS: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec, *, replace: bool = False) -> None:
    """Add a named model (tests and users can register their own)."""
    if spec.name in MODELS and not replace:
        raise ModelError(f"model '{spec.name}' is already registered")
    MODELS[spec.name] = spec


for _spec in (
    ModelSpec(
        "iconvnet",
        "invertible.models.iconvnet:build_iconvnet",
        frozenset({"image"}),
        "i-ConvNet: invertible circular convolutions + SneakyReLU, multi-scale (default)",
    ),
    ModelSpec(
        "glow",
        "invertible.models.glow:build_glow",
        frozenset({"image"}),
        "Glow: ActNorm, 1x1 convolutions, affine couplings, multi-scale",
        defaults={"levels": 2, "depth": 4, "hidden": 64},
        # MNIST, 5 min on one core each, side by side: 1.76 bits/dim at 2e-3 vs 1.90 at
        # 1e-3; see benchmarks/results/mnist_budget.md for the 30-minute runs.
        lr=2e-3,
    ),
    ModelSpec(
        "realnvp",
        "invertible.models.realnvp:build_realnvp",
        frozenset({"image"}),
        "RealNVP: checkerboard/channel affine couplings, multi-scale",
    ),
    ModelSpec(
        "maf",
        "invertible.models.maf:build_maf",
        frozenset({"vector"}),
        "MAF: masked autoregressive flow for vector data",
        shape_arg="dim",
        defaults={"depth": 5, "hidden": 64},
    ),
    ModelSpec(
        "elementwise",
        build_elementwise,
        frozenset({"image", "vector"}),
        "factorised baseline: an independent 1-D flow per dimension",
    ),
):
    register_model(_spec)


def model_names() -> list[str]:
    return sorted(MODELS)


def model_lrs() -> dict[str, float]:
    """The models that set their own default peak learning rate, and that rate."""
    return {name: spec.lr for name, spec in sorted(MODELS.items()) if spec.lr is not None}


def data_kind(data_shape: Sequence[int]) -> str:
    if len(data_shape) == 3:
        return "image"
    if len(data_shape) == 1:
        return "vector"
    raise ModelError(f"data shape {tuple(data_shape)} is neither (C, H, W) nor (D,)")


def build_model(name: str, data_shape: Sequence[int], **options: Any) -> Flow:
    """Build the named model for data of shape ``(C, H, W)`` or ``(D,)``.

    ``options`` override the spec's defaults; options the builder does not take, unknown
    names and data the model cannot handle raise ``ModelError`` with a one-line message.
    """
    spec = MODELS.get(name)
    if spec is None:
        raise ModelError(f"unknown model '{name}' (choose from {', '.join(model_names())})")
    kind = data_kind(data_shape)
    if kind not in spec.kinds:
        other = "image" if kind == "vector" else "vector"
        fits = [n for n, s in sorted(MODELS.items()) if kind in s.kinds]
        raise ModelError(
            f"model '{name}' is for {other} data, not {kind} data of shape "
            f"{tuple(data_shape)} (use one of: {', '.join(fits)})"
        )
    builder = spec.resolve()
    params = inspect.signature(builder).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    given = {k: v for k, v in options.items() if v is not None}
    for key in given:
        if not takes_any and key not in params:
            raise ModelError(f"model '{name}' has no option '{key}'")
    kwargs = {k: v for k, v in spec.defaults.items() if takes_any or k in params}
    kwargs.update(given)
    if builder is build_elementwise:
        kwargs["image"] = kind == "image"
    shape_value: Any = int(data_shape[0]) if spec.shape_arg == "dim" else tuple(data_shape)
    try:
        flow = builder(shape_value, **kwargs)
    except (ValueError, TypeError) as e:
        raise ModelError(f"cannot build model '{name}' for shape {tuple(data_shape)}: {e}") from e
    if not isinstance(flow, Flow):
        raise ModelError(f"model '{name}' builder returned {type(flow).__name__}, not a Flow")
    return flow


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
