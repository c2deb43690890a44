"""How exactly a model's inverse undoes it on real data: per-example relative errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

__all__ = ["round_trip_errors"]


@torch.no_grad()
def round_trip_errors(prepare: Callable[[Tensor], Tensor], there: Callable[[Tensor], Tensor],
                      back: Callable[[Tensor], Tensor], split: Any, batch_size: int,
                      limit: int | None = None) -> Tensor:
    """``|back(there(x)) - x| / |x|`` per example ``(N,)`` (float64, on the CPU) over the
    first ``limit`` rows of ``split`` (all by default), ``x = prepare(rows)``."""
    n = len(split) if limit is None else min(limit, len(split))
    errs = []
    for start in range(0, n, batch_size):
        x = prepare(split.x[start : min(start + batch_size, n)])
        diff = (back(there(x)) - x).flatten(1).norm(dim=1)
        errs.append((diff / x.flatten(1).norm(dim=1).clamp_min(1e-30)).double().cpu())
    return torch.cat(errs) if errs else torch.zeros(0, dtype=torch.float64)
