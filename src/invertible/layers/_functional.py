"""Numerically stable scalar functions that several layers share."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["log_sigmoid_derivative", "soft_clamp"]


def log_sigmoid_derivative(v: Tensor) -> Tensor:
    """``log sigma'(v) = log sigma(v) + log sigma(-v)``, finite for large ``|v|``."""
    return -F.softplus(-v) - F.softplus(v)


def soft_clamp(s: Tensor, bound: float) -> Tensor:
    """``bound * tanh(s / bound)``: smooth, identity near 0, ``|result| < bound``.

    Couplings bound their log-scales with it so one bad step cannot overflow ``exp(s)``.
    """
    return bound * torch.tanh(s / bound)
