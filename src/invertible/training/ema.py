"""Exponential moving average of a model's weights (Polyak averaging), for eval and sampling."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

__all__ = ["EMA"]


class EMA:
    """Keeps ``averaged``, a copy of ``model`` whose floating-point parameters and buffers
    follow ``avg <- decay * avg + (1 - decay) * current`` after every ``update``.

    Non-floating buffers (e.g. an ActNorm "initialized" flag) are copied as they are.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"EMA: decay must lie in (0, 1), got {decay}")
        self.decay = float(decay)
        self.averaged = copy.deepcopy(model).eval()
        for p in self.averaged.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        current = model.state_dict()
        for name, avg in self.averaged.state_dict().items():
            new = current[name]
            if avg.is_floating_point():
                avg.lerp_(new.to(avg.dtype), 1 - self.decay)
            else:
                avg.copy_(new)

    @torch.no_grad()
    def reset(self, model: nn.Module) -> None:
        """Copy ``model`` exactly (e.g. after data-dependent init)."""
        self.averaged.load_state_dict(model.state_dict())

    def state_dict(self) -> dict[str, Tensor]:
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.averaged.load_state_dict(state)
