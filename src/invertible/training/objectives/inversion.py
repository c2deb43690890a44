"""How exactly a model's inverse undoes it on real data: per-example relative errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

__all__ = ["relative_errors", "round_trip_errors"]


def relative_errors(back: Tensor, x: Tensor) -> Tensor:
    """``|back - x| / |x|`` per example: ``(B, ...)`` twice -> ``(B,)`` float64 on the CPU."""
    diff = (back - x).flatten(1).norm(dim=1)
    return (diff / x.flatten(1).norm(dim=1).clamp_min(1e-30)).double().cpu()


@torch.no_grad()
def round_trip_errors(prepare: Callable[[Tensor], Tensor], round_trip: Callable[..., Tensor],
                      split: Any, batch_size: int, limit: int | None = None,
                      with_labels: bool = False) -> Tensor:
    """``relative_errors(round_trip(x), x)`` per example ``(N,)`` over the first ``limit``
    rows of ``split`` (all by default), ``x = prepare(rows)``; ``with_labels`` calls
    ``round_trip(x, y)`` with the rows' labels (for conditional models)."""
    n = len(split) if limit is None else min(limit, len(split))
    errs = []
    for start in range(0, n, batch_size):
        x = prepare(split.x[start : min(start + batch_size, n)])
        labels = (split.y[start : min(start + batch_size, n)],) if with_labels else ()
        errs.append(relative_errors(round_trip(x, *labels), x))
    return torch.cat(errs) if errs else torch.zeros(0, dtype=torch.float64)
