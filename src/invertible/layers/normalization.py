"""Activation normalisation (Glow's ActNorm): a per-channel affine map with data init."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ..core import Bijection, InvalidInputError

__all__ = ["ActNorm"]


class ActNorm(Bijection):
    """``z = x * exp(log_scale) + bias`` with one scale and bias per feature (dimension 1).

    Input ``(B, C)``, ``(B, C, H, W)`` or any ``(B, C, ...)``; the same affine map is used
    at every spatial position, so the log-det is ``H * W * sum(log_scale)``.

    Data-dependent initialisation (Kingma & Dhariwal, 2018): the first ``forward`` call in
    training mode sets the parameters so that the outputs of that batch have zero mean and
    unit variance per channel (over batch and spatial positions). ``initialize(x)`` does
    the same explicitly, ``mark_initialized()`` skips it (e.g. to keep hand-set values).
    Whether the init has happened is the boolean buffer ``initialized``; it is part of the
    ``state_dict``, so a loaded model is never re-initialised. In eval mode, or when called
    through ``inverse``, an uninitialised layer is used as it stands (identity at first).

    Distributed training: ``DistributedDataParallel`` broadcasts rank 0's parameters only
    when it wraps the model, and never re-synchronises parameters afterwards. Run one
    forward pass in training mode on a data batch (or call ``initialize``) *before*
    wrapping the model; DDP then copies rank 0's initialised parameters and flags to every
    rank. Initialising after wrapping would leave each rank with its own batch's
    statistics, and the replicas would silently differ.
    """

    initialized: Tensor

    def __init__(self, num_features: int, eps: float = 1e-6) -> None:
        super().__init__()
        if num_features < 1:
            raise ValueError(f"ActNorm: num_features must be >= 1, got {num_features}")
        if not eps > 0:
            raise ValueError(f"ActNorm: eps must be > 0, got {eps}")
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.log_scale = nn.Parameter(torch.zeros(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("initialized", torch.tensor(False))
        # Python-side copy of the flag once it is True, so that training steps do not
        # read the buffer back from the device (a synchronisation) on every call.
        self._known_initialized = False

    def _shape(self, x: Tensor) -> tuple[int, ...]:
        """Broadcast shape of per-channel parameters against ``x``: ``(1, C, 1, ...)``."""
        return (1, self.num_features) + (1,) * (x.dim() - 2)

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Set scale and bias so that ``forward(x)`` has zero mean, unit variance per channel."""
        self._check(x, [("B", self.num_features, "...")])
        per_channel = x.transpose(0, 1).reshape(self.num_features, -1)
        if per_channel.shape[1] < 2:
            raise InvalidInputError(
                "ActNorm: data-dependent init needs at least 2 values per channel "
                f"(got input of shape {tuple(x.shape)}); use a larger batch or call "
                "mark_initialized()"
            )
        mean = per_channel.mean(dim=1)
        std = per_channel.std(dim=1, unbiased=False).clamp_min(self.eps)
        self.log_scale.copy_(-torch.log(std))
        self.bias.copy_(-mean / std)
        self.initialized.fill_(True)
        self._known_initialized = True

    def mark_initialized(self) -> None:
        """Declare the current parameters final: no data-dependent init will run."""
        self.initialized.fill_(True)
        self._known_initialized = True

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        # The loaded flag decides; re-read it on the next training call.
        self._known_initialized = False
        super()._load_from_state_dict(*args, **kwargs)

    def _logdet(self, x: Tensor) -> Tensor:
        return (math.prod(x.shape[2:]) * self.log_scale.sum()).expand(x.shape[0])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x, [("B", self.num_features, "...")])
        if self.training and not self._known_initialized:
            if bool(self.initialized):
                self._known_initialized = True
            else:
                self.initialize(x)
        shape = self._shape(x)
        z = x * torch.exp(self.log_scale).view(shape) + self.bias.view(shape)
        return z, self._logdet(x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._check(z, [("B", self.num_features, "...")])
        shape = self._shape(z)
        x = (z - self.bias.view(shape)) * torch.exp(-self.log_scale).view(shape)
        return x, -self._logdet(z)

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, initialized={bool(self.initialized)}"
