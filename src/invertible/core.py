"""The bijection contract and its composition.

Every layer maps data to latent. ``forward(x) -> (z, logabsdet)`` with
``logabsdet = log|det dz/dx|`` of shape ``(batch,)``; ``inverse(z) -> (x, logabsdet)``
returns the inverse's own log-det, which is minus the forward one at the matching point.

Conditional layers (``takes_context`` True) also take ``context=c``, a ``(batch, K)`` tensor
(or ``(batch, K, H, W)`` for image layers) that their conditioner networks read:
``forward(x, context=c)`` and ``inverse(z, context=c)``. Containers pass the context on to
the parts that take one, so a stack mixing conditional and plain layers needs no wrapping.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

__all__ = [
    "Bijection",
    "InvalidInputError",
    "Inverse",
    "Sequential",
    "apply_layer",
    "check_context",
    "check_context_features",
    "describe_shape",
    "sum_except_batch",
    "value_checks_active",
]


class InvalidInputError(ValueError):
    """Raised when a layer is given input it cannot handle (shape, dtype, values)."""


def describe_shape(shape: Sequence[int | str]) -> str:
    """Format a shape like ``(B, 3, H, W)`` for error messages."""
    return "(" + ", ".join(str(s) for s in shape) + ")"


class Bijection(nn.Module):
    """An invertible map with a tractable log-determinant.

    Subclasses implement ``forward`` (data -> latent) and ``inverse`` (latent -> data).
    Both return ``(output, logabsdet)`` with ``logabsdet`` of shape ``(batch,)``.
    Conditional subclasses set ``takes_context`` and accept ``context=`` in both.
    """

    #: Whether ``forward``/``inverse`` accept ``context=`` (see the module docstring).
    takes_context: bool = False

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def transform(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """``forward(x)``'s output alone (data -> latent, same shapes), for callers that do
        not use the log-det, such as a classifier on the features. Layers whose log-det
        costs extra work (``CircularConv2d``) skip it. ``context`` as for ``forward``;
        only conditional layers take one."""
        if self.takes_context:
            return apply_layer(self, x, context)[0]
        self._refuse_context(context)
        return self._transform(x)

    def _transform(self, x: Tensor) -> Tensor:
        return self(x)[0]

    def _refuse_context(self, context: Tensor | None) -> None:
        if context is not None and not self.takes_context:
            raise InvalidInputError(f"{type(self).__name__}: takes no context, but one was given")

    # -- validation helpers shared by all layers -------------------------------------------
    def _check(
        self,
        x: Tensor,
        expected: Sequence[Sequence[int | str]],
    ) -> None:
        """Check ``x`` against one of several expected shapes.

        ``expected`` lists shapes such as ``[("B", 4), ("B", 4, "H", "W")]``: an int entry
        must match exactly, a string entry is free, and a trailing ``"..."`` admits any
        further dimensions. The first entry is always the batch.
        """
        name = type(self).__name__
        if not isinstance(x, Tensor):
            raise InvalidInputError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise InvalidInputError(
                f"{name}: expected a floating-point tensor, got dtype {x.dtype}"
            )
        for shape in expected:
            fixed = shape[:-1] if shape and shape[-1] == "..." else shape
            rank_ok = x.dim() >= len(fixed) if len(fixed) < len(shape) else x.dim() == len(shape)
            if rank_ok and all(
                isinstance(s, str) or x.shape[i] == s for i, s in enumerate(fixed)
            ):
                return
        wanted = " or ".join(describe_shape(s) for s in expected)
        raise InvalidInputError(
            f"{name}: expected input of shape {wanted}, got {describe_shape(tuple(x.shape))}"
        )

    @staticmethod
    def _zeros(x: Tensor) -> Tensor:
        """A zero log-det of shape ``(batch,)`` matching ``x``'s dtype and device."""
        return x.new_zeros(x.shape[0])


class Sequential(Bijection):
    """Composition ``b_n o ... o b_1``: forward runs in order, inverse in reverse order.

    The log-dets of the parts are summed.
    """

    def __init__(self, *bijections: Bijection | Iterable[Bijection]) -> None:
        super().__init__()
        flat: list[Bijection] = []
        for b in bijections:
            if isinstance(b, Bijection):
                flat.append(b)
            else:
                flat.extend(b)
        for b in flat:
            if not isinstance(b, Bijection):
                raise TypeError(f"Sequential takes Bijections, got {type(b).__name__}")
        self.layers = nn.ModuleList(flat)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i: int) -> Bijection:
        # `layers` only ever holds Bijections (checked in __init__); ModuleList types as Module.
        return cast(Bijection, self.layers[i])

    def __iter__(self) -> Iterator[Bijection]:
        return cast("Iterator[Bijection]", iter(self.layers))

    @property
    def takes_context(self) -> bool:  # type: ignore[override]
        return any(b.takes_context for b in self)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total = self._zeros(x)
        for layer in self:
            x, ld = apply_layer(layer, x, context)
            total = total + ld
        return x, total

    def transform(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        self._refuse_context(context)
        for layer in self:
            x = layer.transform(x, context if layer.takes_context else None)
        return x

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total = self._zeros(z)
        for layer in cast("Iterable[Bijection]", reversed(self.layers)):
            z, ld = apply_layer(layer, z, context, inverse=True)
            total = total + ld
        return z, total


class Inverse(Bijection):
    """Swap the two directions of a bijection (e.g. a MAF becomes an IAF)."""

    def __init__(self, bijection: Bijection) -> None:
        super().__init__()
        if not isinstance(bijection, Bijection):
            raise TypeError(f"Inverse takes a Bijection, got {type(bijection).__name__}")
        self.bijection = bijection

    @property
    def takes_context(self) -> bool:  # type: ignore[override]
        return self.bijection.takes_context

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return apply_layer(self.bijection, x, context, inverse=True)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return apply_layer(self.bijection, z, context)


def apply_layer(
    layer: Bijection, x: Tensor, context: Tensor | None, inverse: bool = False
) -> tuple[Tensor, Tensor]:
    """``layer(x)`` or ``layer.inverse(x)``, handing ``context`` on only if the layer takes
    one: plain layers keep their one-argument signature."""
    step = layer.inverse if inverse else layer
    if layer.takes_context:
        # The base signature has no context (plain layers keep theirs); these layers add it.
        return cast(Any, step)(x, context=context)
    return step(x)


def inside_function_transform() -> bool:
    """Whether the code runs under a ``torch.func`` transform (``vmap``, ``grad``), as the
    per-sample gradients of DP training do."""
    active = getattr(torch._C, "_are_functorch_transforms_active", None)
    return bool(active()) if active is not None else False


def value_checks_active() -> bool:
    """Whether checks that read tensor values on the host (ranges, finiteness) can run.

    False inside ``torch.func`` transforms, where a value cannot leave the device; whoever
    transforms a model validates the whole batch before (DP training takes its batches from
    a validated split). Shape and dtype checks run either way.
    """
    return not inside_function_transform()


def check_context_features(owner: str, value: object, minimum: int = 0) -> int:
    """A constructor's ``context_features``: an int >= ``minimum``, else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{owner}: context_features must be an int >= {minimum}, got "
                         f"{value!r}")
    return value


def check_context(
    layer: Bijection, context: Tensor | None, x: Tensor, features: int
) -> Tensor:
    """Validate a conditional layer's ``context`` against its input ``x``.

    Accepts ``(B, features)`` and, for image inputs ``(B, C, H, W)``, also
    ``(B, features, H, W)``; returns it in ``x``'s dtype and device.
    """
    name = type(layer).__name__
    if context is None:
        raise InvalidInputError(
            f"{name}: this layer is conditional; pass context of shape (B, {features})"
        )
    if not isinstance(context, Tensor) or not context.is_floating_point():
        kind = context.dtype if isinstance(context, Tensor) else type(context).__name__
        raise InvalidInputError(
            f"{name}: context must be a floating-point tensor (one-hot encode labels), got {kind}"
        )
    shapes: list[tuple[int, ...]] = [(x.shape[0], features)]
    if x.dim() == 4:
        shapes.append((x.shape[0], features, x.shape[2], x.shape[3]))
    if tuple(context.shape) not in shapes:
        wanted = " or ".join(describe_shape(s) for s in shapes)
        raise InvalidInputError(
            f"{name}: expected context of shape {wanted} for input of shape "
            f"{describe_shape(tuple(x.shape))}, got {describe_shape(tuple(context.shape))}"
        )
    # Finiteness is checked once by ``Flow``, as for the data: a check here would cost a
    # device sync in every conditional layer of every step.
    return context.to(dtype=x.dtype, device=x.device)


def sum_except_batch(t: Tensor) -> Tensor:
    """Sum all dimensions but the first: ``(B, ...) -> (B,)``.

    Half-precision terms (bfloat16 autocast) are summed in float32: a log-det or log-density
    is a sum over thousands of dimensions, which bfloat16's 8-bit mantissa cannot hold.
    """
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.float()
    return t.reshape(t.shape[0], -1).sum(dim=1)

