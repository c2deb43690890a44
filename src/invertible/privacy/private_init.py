"""A differentially private start for ActNorm: the first layer's input statistics, estimated
by the Gaussian mechanism and accounted with the training.

ActNorm's data-dependent initialisation reads private data, so a DP run cannot use it as is;
starting every ActNorm at the identity instead cost MNIST Glow about 1.5 bits/dim after 80
steps (5.13 against 3.58, non-private, batch 256). Initialising only the *first* ActNorm from
data recovered nearly all of it (3.65), and that layer needs just the per-channel mean and
second moment of its input: ``2 C`` numbers.

So a DP run estimates those: a Poisson sample of the training split at rate ``q0``, each
example's vector of per-channel means and mean squares clipped to norm ``clip`` (a bound
computed from the input domain, without data: the statistics of the all-darkest and
all-brightest images), summed, plus Gaussian noise of standard deviation ``sigma0 * clip``,
divided by the expected count. That is one subsampled Gaussian mechanism, which the
accountant composes with the training steps; the other ActNorm layers start at the identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["INIT_EXAMPLES", "INIT_NOISE_MULTIPLIER", "InitQuery", "first_actnorm",
           "planned_init", "private_first_actnorm_init"]

#: The init's noise multiplier sigma0 and expected sample size: with 54,000 MNIST training
#: images (q0 = 0.185) it costs epsilon 0.07 at delta 1e-5 alone, and next to nothing
#: composed with training (RDP); the noise on a mean is sigma0 * clip / 10,000.
INIT_NOISE_MULTIPLIER = 10.0
INIT_EXAMPLES = 10_000


@dataclass(frozen=True)
class InitQuery:
    """The init's Gaussian mechanism: ``noise_multiplier`` (sigma0), Poisson ``sample_rate``
    (q0) and the clipping bound of a per-example statistics vector. Its accountant history
    entry is ``(sigma0, q0, 1)``."""

    noise_multiplier: float
    sample_rate: float
    clip: float

    def history(self) -> tuple[float, float, int]:
        return (self.noise_multiplier, self.sample_rate, 1)


def planned_init(objective: nn.Module, n_train: int) -> InitQuery | None:
    """The init mechanism a DP run of ``objective`` on ``n_train`` examples will use (its clip
    is set when it runs; the accountant needs only sigma0 and q0), or None without ActNorm."""
    if first_actnorm(objective) is None:
        return None
    return InitQuery(INIT_NOISE_MULTIPLIER, min(1.0, INIT_EXAMPLES / max(n_train, 1)), 0.0)


class _Captured(Exception):
    """Raised by the hook to stop a forward pass once the first ActNorm's input is seen."""

    def __init__(self, x: Tensor) -> None:
        super().__init__()
        self.x = x


def first_actnorm(module: nn.Module) -> Any:
    """The first data-initialised layer (ActNorm: ``log_scale``, ``bias``, ``mark_initialized``)
    in ``module``'s order, or None."""
    return next((m for m in module.modules() if callable(getattr(m, "mark_initialized", None))),
                None)


def _input_of(objective: nn.Module, layer: nn.Module, x: Tensor, y: Tensor | None) -> Tensor:
    """What ``layer`` receives when ``objective`` runs on ``(x, y)`` (the pass stops there)."""

    def hook(_m: nn.Module, args: tuple[Tensor, ...]) -> None:
        raise _Captured(args[0].detach())

    handle = layer.register_forward_pre_hook(hook)
    try:
        objective(x, y)
    except _Captured as got:
        return got.x
    finally:
        handle.remove()
    raise RuntimeError("the first ActNorm did not run in the objective's forward pass")


def _statistics(a: Tensor) -> Tensor:
    """Per-example ``[per-channel mean, per-channel mean square]`` ``(B, 2C)`` of ``(B, C, ...)``."""
    flat = a.reshape(a.shape[0], a.shape[1], -1).double()
    return torch.cat([flat.mean(2), (flat**2).mean(2)], dim=1)


@torch.no_grad()
def private_first_actnorm_init(objective: nn.Module, split: Any, *, sample_rate: float,
                               noise_multiplier: float, seed: int,
                               batch_size: int = 512) -> InitQuery | None:
    """Set the first ActNorm of ``objective`` from a DP estimate of its input statistics on
    ``split`` (a ``Split`` of integer levels); every ActNorm is marked initialised. Returns the
    mechanism for the accountant, or None when the model has no ActNorm."""
    from .dpsgd import skip_data_dependent_init

    layer = first_actnorm(objective)
    skip_data_dependent_init(objective)
    if layer is None:
        return None
    n_bins = int(getattr(objective, "n_bins", 0) or 0)
    shape = tuple(getattr(objective, "shape", ()))
    device = next(objective.parameters()).device
    was = objective.training
    objective.eval()
    try:
        # The bound on a statistics vector's norm, from the input domain alone (no data).
        extremes = torch.stack([torch.zeros(shape), torch.full(shape, n_bins - 1)]).to(
            device, torch.uint8)
        labels = torch.zeros(2, dtype=torch.long, device=device)
        clip = 1.5 * float(_statistics(_input_of(objective, layer, extremes, labels))
                           .norm(dim=1).max())
        g = torch.Generator().manual_seed(seed * 1_000_003 + 7)
        n = len(split)
        idx = torch.nonzero(torch.rand(n, generator=g) < sample_rate).flatten()
        total: Tensor | None = None
        for s in range(0, len(idx), batch_size):
            x, y = split.batch(idx[s : s + batch_size], device)
            v = _statistics(_input_of(objective, layer, x, y))
            v = v * (clip / (v.norm(dim=1, keepdim=True) + 1e-12)).clamp(max=1.0)
            total = v.sum(0) if total is None else total + v.sum(0)
        channels = layer.log_scale.numel()
        if total is None:
            total = torch.zeros(2 * channels, dtype=torch.float64, device=device)
        noise = torch.randn(total.shape, generator=g, dtype=torch.float64) * (
            noise_multiplier * clip)
        est = (total.cpu() + noise) / max(sample_rate * n, 1.0)
        mean, square = est[:channels], est[channels:]
        std = (square - mean**2).clamp_min(1e-4).sqrt()
        layer.log_scale.copy_(-torch.log(std).to(layer.log_scale))
        layer.bias.copy_((-mean / std).to(layer.bias))
    finally:
        objective.train(was)
    return InitQuery(noise_multiplier, sample_rate, clip)
