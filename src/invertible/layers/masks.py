"""Binary masks for coupling layers.

``True`` marks entries that pass through a coupling unchanged and condition the rest;
``False`` marks entries that are transformed. ``flip=True`` swaps the two roles, so
alternating ``flip`` between consecutive couplings transforms every entry.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["alternating_mask", "channel_mask", "checkerboard_mask", "half_mask"]


def _need(n: int, what: str, name: str) -> None:
    if n < 2:
        raise ValueError(f"{name}: need {what} >= 2 so that both halves are non-empty, got {n}")


def half_mask(n: int, flip: bool = False) -> Tensor:
    """``(n,)`` bool: the first ``n // 2`` entries are True (kept), the rest False."""
    _need(n, "n", "half_mask")
    m = torch.arange(n) < n // 2
    return ~m if flip else m


def alternating_mask(n: int, flip: bool = False) -> Tensor:
    """``(n,)`` bool: even indices True (kept), odd indices False."""
    _need(n, "n", "alternating_mask")
    m = torch.arange(n) % 2 == 0
    return ~m if flip else m


def channel_mask(c: int, flip: bool = False) -> Tensor:
    """``(c,)`` bool over channels of an image: the first ``c // 2`` channels are kept.

    After ``Squeeze`` the first half of the channels is one colour of a checkerboard, so
    this split right after a squeeze is a checkerboard split of the unsqueezed image.
    """
    _need(c, "c", "channel_mask")
    return half_mask(c, flip)


def checkerboard_mask(h: int, w: int, flip: bool = False) -> Tensor:
    """``(1, h, w)`` bool: True where ``(row + col)`` is even; broadcasts over channels."""
    if h < 1 or w < 1 or h * w < 2:
        raise ValueError(f"checkerboard_mask: need at least 2 pixels, got {h}x{w}")
    rows = torch.arange(h).unsqueeze(1)
    cols = torch.arange(w).unsqueeze(0)
    m = ((rows + cols) % 2 == 0).unsqueeze(0)
    return ~m if flip else m
