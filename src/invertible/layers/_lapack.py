"""Batched LU-based linear algebra that works around a PyTorch CPU hang (private).

With PyTorch 2.13's CPU build, a batched LU (``lu_factor``, ``slogdet``, ``solve``, ``inv``)
of large matrices splits the batch across intra-op threads, and oneMKL's
row swaps then fail ("Parameter 6 was incorrect on entry to CLASWP") and the call never
returns (reproduced on the benchmark machine with 2 threads, complex and real, n = 152,
160 and 256; n <= 144 and single matrices were fine). Batches above 128 x 128 are factorised
one matrix per call instead: the matrices are big enough that the Python loop costs little.
"""

from __future__ import annotations

import torch
from torch import Tensor

# The largest order that batched CPU factorisations were seen to handle with threads.
_SAFE_ORDER = 128


def _one_at_a_time(a: Tensor) -> bool:
    return (
        a.device.type == "cpu"
        and a.shape[-1] > _SAFE_ORDER
        and a.dim() > 2
        and a.shape[:-2].numel() > 1
        and torch.get_num_threads() > 1
    )


def lu_factor_ex(
    a: Tensor, out: tuple[Tensor, Tensor, Tensor] | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """``torch.linalg.lu_factor_ex(a, out=out)`` for ``(*, n, n)``: ``(LU, pivots, info)``.
    ``out`` may alias ``a`` (an in-place factorisation)."""
    if not _one_at_a_time(a):
        return tuple(torch.linalg.lu_factor_ex(a, out=out))
    batch = a.shape[:-2]
    if out is None:
        parts = [torch.linalg.lu_factor_ex(m) for m in a.flatten(0, -3)]
        return (
            torch.stack([p.LU for p in parts]).view(a.shape),
            torch.stack([p.pivots for p in parts]).view(*batch, -1),
            torch.stack([p.info for p in parts]).view(batch),
        )
    lu, piv, info = out
    flat = zip(a.flatten(0, -3), lu.flatten(0, -3), piv.flatten(0, -2), info.flatten())
    for m, lu_i, piv_i, info_i in flat:
        torch.linalg.lu_factor_ex(m, out=(lu_i, piv_i, info_i))
    return lu, piv, info


def slogdet_abs(a: Tensor) -> Tensor:
    """``torch.linalg.slogdet(a).logabsdet``, differentiable: ``(*, n, n) -> (*)``."""
    if not _one_at_a_time(a):
        return torch.linalg.slogdet(a).logabsdet
    return torch.stack([torch.linalg.slogdet(m).logabsdet for m in a.flatten(0, -3)]).view(
        a.shape[:-2]
    )


def solve_right(a: Tensor, b: Tensor) -> Tensor:
    """``X`` with ``X a = b`` (``torch.linalg.solve(a, b, left=False)``), differentiable;
    ``a`` is ``(*, n, n)``, ``b`` is ``(*, m, n)`` with the same batch shape."""
    if not _one_at_a_time(a):
        return torch.linalg.solve(a, b, left=False)
    pairs = zip(a.flatten(0, -3), b.flatten(0, -3))
    return torch.stack([torch.linalg.solve(m, r, left=False) for m, r in pairs]).view(b.shape)
