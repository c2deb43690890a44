"""Named model builders for the command line: ``build_model("glow", (1, 28, 28), depth=8)``.

Builders are imported lazily, so that a model family being absent (or slow to import)
never breaks the others. Every builder returns an ``invertible.Flow`` whose input is data
in [0, 1] for images (shape ``(C, H, W)``) or raw vectors (shape ``(D,)``).

Each builder checks its own options at its top (with ``check_int`` and friends below) and
raises ``ModelError`` for a value it cannot honour. ``build_model`` passes every other
exception through unchanged: an error raised deeper down is a bug, not a user mistake.
"""

from __future__ import annotations

import importlib
import inspect
import math
import numbers
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..core import Bijection, Sequential
from ..distributions import Flow, StandardNormal
from ..layers.elementwise import ElementwiseAffine, LogitTransform, SneakyReLU

__all__ = [
    "MODELS",
    "ModelError",
    "ModelSpec",
    "build_model",
    "check_bool",
    "check_choice",
    "check_halvings",
    "check_int",
    "check_real",
    "conditional_models",
    "model_lrs",
    "model_names",
    "register_model",
]


class ModelError(ValueError):
    """A model name, option or data shape the registry cannot honour (one-line message)."""


# -- option checks for builders: each returns the value or raises ModelError ---------------
def check_int(owner: str, name: str, value: Any, minimum: int = 1) -> int:
    """An integer ``>= minimum`` (``True`` is not an integer here)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ModelError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_real(owner: str, name: str, value: Any, ok: Callable[[float], bool], what: str) -> float:
    """A finite number for which ``ok`` holds; ``what`` says which, e.g. ``"in (0, 1)"``."""
    good = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not (good and math.isfinite(value) and ok(float(value))):
        raise ModelError(f"{owner}: {name} must be a number {what}, got {value!r}")
    return float(value)


def check_bool(owner: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ModelError(f"{owner}: {name} must be true or false, got {value!r}")
    return value


def check_choice(owner: str, name: str, value: Any, choices: Collection[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ModelError(
            f"{owner}: {name} must be one of {', '.join(sorted(choices))}, got {value!r}"
        )
    return value


def check_halvings(owner: str, h: int, w: int, times: int, why: str) -> None:
    """Both sides of an ``h x w`` image must halve evenly ``times`` times; ``why`` names the
    setting that asks for it and the way out, e.g. ``"levels=4; use fewer levels"``."""
    f = 2**times
    if h % f or w % f:
        raise ModelError(
            f"{owner}: {h}x{w} images cannot be halved {times} times (sides divisible by {f} "
            f"needed; {why})"
        )


@dataclass(frozen=True)
class ModelSpec:
    """How to build one named model.

    ``builder`` is a callable or ``"module:function"`` (imported on first use). ``kinds``
    says which data it accepts: ``"image"`` (``(C, H, W)`` in [0, 1]) and/or ``"vector"``
    (``(D,)``). ``shape_arg`` is how the data shape is passed: ``"shape"`` (the tuple) or
    ``"dim"`` (the vector length). ``defaults`` are options used when the caller gives none.
    ``conditional``: the builder takes ``context_features=K`` and then returns a conditional
    flow ``p(x | c)`` (its conditioner networks read a ``(B, K)`` context); models without
    it have no conditioner to read one, and ``build_model`` refuses ``context_features``.
    """

    name: str
    builder: str | Callable[..., Flow]
    kinds: frozenset[str]
    description: str
    shape_arg: str = "shape"
    defaults: dict[str, Any] = field(default_factory=dict)
    lr: float | None = None  # peak learning rate of `invertible train` when --lr is not given
    conditional: bool = False

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
    check_int("build_elementwise", "depth", depth)
    check_bool("build_elementwise", "image", image)
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
        conditional=True,  # with hybrid=true only: the builder refuses a context otherwise
    ),
    ModelSpec(
        "iconvnet-paper",
        "invertible.models.iconvnet_paper:build_iconvnet_paper",
        frozenset({"image"}),
        "i-ConvNet as the paper's code builds it: logit, per scale 3 x [circular conv -> "
        "SneakyReLU 0.1], average pooling between scales, no factor-out or normalisation",
    ),
    ModelSpec(
        "glow",
        "invertible.models.glow:build_glow",
        frozenset({"image"}),
        "Glow: ActNorm, 1x1 convolutions, affine (or coupling=spline) couplings, multi-scale",
        defaults={"levels": 2, "depth": 4, "hidden": 64},
        # MNIST, 5 min on one core each, side by side: 1.76 bits/dim at 2e-3 vs 1.90 at
        # 1e-3; see benchmarks/results/mnist_budget.md for the 30-minute runs.
        lr=2e-3,
        conditional=True,
    ),
    ModelSpec(
        "realnvp",
        "invertible.models.realnvp:build_realnvp",
        frozenset({"image"}),
        "RealNVP: checkerboard/channel affine couplings, multi-scale",
        conditional=True,
    ),
    ModelSpec(
        "maf",
        "invertible.models.maf:build_maf",
        frozenset({"vector"}),
        "MAF: masked autoregressive flow for vector data",
        shape_arg="dim",
        defaults={"depth": 5, "hidden": 64},
        conditional=True,
    ),
    ModelSpec(
        "nsf-coupling",
        "invertible.models.nsf:build_nsf_coupling",
        frozenset({"vector"}),
        "Neural Spline Flow: rational-quadratic spline couplings for vector data",
        shape_arg="dim",
        conditional=True,
    ),
    ModelSpec(
        "nsf-ar",
        "invertible.models.nsf:build_nsf_ar",
        frozenset({"vector"}),
        "Neural Spline Flow: autoregressive (MADE) rational-quadratic splines for vectors",
        shape_arg="dim",
        conditional=True,
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


def conditional_models() -> list[str]:
    """The models that can be conditional (``context_features``; i-ConvNet: hybrid only)."""
    return [name for name, spec in sorted(MODELS.items()) if spec.conditional]


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
    names and data the model cannot handle raise ``ModelError`` with a one-line message
    (values are checked by the builder itself; any other exception is a bug and propagates).
    ``context_features=K > 0`` asks for a conditional flow; a model without a conditioner
    network refuses it with ``ModelError``.
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
    if options.get("context_features") and not spec.conditional:
        raise ModelError(
            f"model '{name}' has no conditioner network to take a context, so it cannot be "
            f"conditional (use one of: {', '.join(conditional_models())})"
        )
    builder = spec.resolve()
    params = inspect.signature(builder).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    given = {k: v for k, v in options.items() if v is not None}
    if not spec.conditional and not given.get("context_features", True):
        del given["context_features"]  # 0: unconditional, which every model is
    for key in given:
        if not takes_any and key not in params:
            raise ModelError(f"model '{name}' has no option '{key}'")
    kwargs = {k: v for k, v in spec.defaults.items() if takes_any or k in params}
    kwargs.update(given)
    if builder is build_elementwise:
        kwargs["image"] = kind == "image"
    shape_value: Any = int(data_shape[0]) if spec.shape_arg == "dim" else tuple(data_shape)
    flow = builder(shape_value, **kwargs)
    if not isinstance(flow, Flow):
        raise ModelError(f"model '{name}' builder returned {type(flow).__name__}, not a Flow")
    if bool(given.get("context_features")) != flow.conditional:
        # A builder that dropped (or invented) the context would train the wrong model.
        want = "a conditional" if given.get("context_features") else "an unconditional"
        raise ModelError(f"model '{name}' builder did not return {want} flow")
    return flow


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
