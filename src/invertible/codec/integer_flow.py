"""The integer discrete flow (Hoogeboom et al., 2019): a bijection from pixels to integers.

Data to latent: integer levels ``x`` ``(B, C, H, W)`` are centred (``x - n_bins // 2``);
each scale squeezes (space to depth, 2x2), applies additive couplings ``x_b += round(t(x_a))``
(with a fixed channel permutation before each), then factors half of its channels out. The
factored-out half ``z_s`` gets a discretized logistic mixture prior whose parameters a
network reads from the half that goes on (``h_s``). The last scale halves its channels the
same way until one is left, which has learned per-position parameters. The inverse subtracts the same rounded translation, so the map is
exact on integers: no error at all, in any dtype that holds the integers exactly.

Training differentiates through ``round`` with the straight-through estimator.

Decoding runs top-down (``decode``): the last scale's symbols first, then each factored-out
half given what has been decoded above it. The entropy coder (``invertible.codec.coder``)
and sampling both use it, with a different ``draw``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from . import prior

__all__ = ["IntegerCoupling", "IntegerFlow", "round_ste", "squeeze2d", "unsqueeze2d"]

# Networks read latents divided by this: integer pixels span about +-128.
_IN_SCALE = 1.0 / 64.0
_LOGIT_GAIN = 4.0
_LOG_SCALE_GAIN = 8.0


def round_ste(x: Tensor) -> Tensor:
    """``round(x)`` forward, identity gradient backward (the straight-through estimator)."""
    return x + (torch.round(x) - x).detach()


def squeeze2d(x: Tensor) -> Tensor:
    """``(B, C, H, W)`` -> ``(B, 4C, H/2, W/2)``: each 2x2 block to channels."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, 4 * c, h // 2, w // 2)


def unsqueeze2d(x: Tensor) -> Tensor:
    """The inverse of ``squeeze2d``."""
    b, c, h, w = x.shape
    x = x.reshape(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(b, c // 4, 2 * h, 2 * w)


def _conv_net(c_in: int, c_out: int, hidden: int) -> nn.Sequential:
    """3x3 -> 1x1 -> 3x3 convolutions; the last starts at zero (the layer starts as identity)."""
    last = nn.Conv2d(hidden, c_out, 3, padding=1)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)  # type: ignore[arg-type]  # Conv2d has a bias here
    return nn.Sequential(nn.Conv2d(c_in, hidden, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(hidden, hidden, 1), nn.ReLU(), last)


class IntegerCoupling(nn.Module):
    """Permute channels, then ``z_b = x_b + round(t(x_a))`` with ``x_a`` the first half.

    ``(B, C, H, W)`` integer-valued floats in, the same shape out; ``inverse`` undoes it
    exactly. The translation's scale ``out_scale`` lets the network reach pixel-sized shifts
    from outputs of order one.
    """

    def __init__(self, channels: int, hidden: int, seed: int, out_scale: float = 32.0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        perm = torch.randperm(channels, generator=gen)
        self.perm: Tensor
        self.inv_perm: Tensor
        self.register_buffer("perm", perm)
        self.register_buffer("inv_perm", torch.argsort(perm))
        self.n_a = channels // 2
        self.out_scale = out_scale
        self.net = _conv_net(self.n_a, channels - self.n_a, hidden)

    def translation(self, x_a: Tensor) -> Tensor:
        # contiguous(): the decoder's x_a is laid out like the encoder's, so that both run
        # the very same kernels and get the same floats to round.
        return round_ste(self.net(x_a.contiguous() * _IN_SCALE) * self.out_scale)

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, self.perm]
        x_a, x_b = x[:, : self.n_a], x[:, self.n_a :]
        return torch.cat([x_a, x_b + self.translation(x_a)], dim=1)

    def inverse(self, z: Tensor) -> Tensor:
        z_a, z_b = z[:, : self.n_a], z[:, self.n_a :]
        x = torch.cat([z_a, z_b - self.translation(z_a)], dim=1)
        return x[:, self.inv_perm]


class _Scale(nn.Module):
    """One scale: optional squeeze, couplings, then factor-outs, each with its prior network.

    A scale other than the last factors out half its channels (the other half goes on to
    the next scale). The last one goes on halving its channels until one is left, each half
    given the channels still to come: without that, a quarter of the pixels' worth of
    latents would get only a per-position prior (on MNIST, the most expensive symbols).
    """

    def __init__(self, channels: int, depth: int, hidden: int, squeeze: bool, last: bool,
                 components: int, seed: int) -> None:
        super().__init__()
        self.squeeze = squeeze
        self.couplings: list[IntegerCoupling] = nn.ModuleList(  # type: ignore[assignment]
            IntegerCoupling(channels, hidden, seed + i) for i in range(depth))
        self.splits: list[int] = []
        rest = channels
        while rest > 1 and (last or not self.splits):
            self.splits.append(rest // 2)
            rest -= rest // 2
        self.rest = rest
        self.priors: list[nn.Module] = nn.ModuleList(  # type: ignore[assignment]
            _conv_net(c_in, 3 * components * n_out, hidden)
            for n_out, c_in in zip(self.splits, self._conditioning(channels), strict=True))

    def _conditioning(self, channels: int) -> list[int]:
        """The channels each factor-out's prior reads: those not yet factored out after it."""
        out, rest = [], channels
        for n_out in self.splits:
            rest -= n_out
            out.append(rest)
        return out


class IntegerFlow(nn.Module):
    """A multi-scale integer discrete flow with a discretized logistic mixture prior.

    ``shape`` ``(C, H, W)`` of the images (H, W divisible by ``2 ** (levels - 1)``);
    ``n_bins`` grey levels; ``levels`` scales (every one but the last squeezes and factors
    half its channels out; the last halves its channels down to one); ``depth`` couplings
    per scale; ``hidden``
    channels of every network; ``components`` logistics per mixture.
    """

    def __init__(self, shape: tuple[int, int, int], n_bins: int = 256, levels: int = 3,
                 depth: int = 4, hidden: int = 64, components: int = 3, seed: int = 0) -> None:
        super().__init__()
        c, h, w = (int(s) for s in shape)
        step = 2 ** (levels - 1)
        if h % step or w % step:
            raise ValueError(f"an integer flow with {levels} levels needs image sides "
                             f"divisible by {step}, got {h}x{w}")
        self.shape = (c, h, w)
        self.n_bins = n_bins
        self.offset = n_bins // 2
        self.components = components
        self.config = {"levels": levels, "depth": depth, "hidden": hidden,
                       "components": components, "seed": seed}
        scales = []
        self.latent_shapes: list[tuple[int, int, int]] = []
        for s in range(levels):
            last = s == levels - 1
            squeeze = not last
            if squeeze:
                c, h, w = 4 * c, h // 2, w // 2
            scale = _Scale(c, depth, hidden, squeeze, last, components, seed + 100 * s)
            scales.append(scale)
            self.latent_shapes += [(n, h, w) for n in scale.splits]
            c = scale.rest
        self.latent_shapes.append((c, h, w))
        self.scales: list[_Scale] = nn.ModuleList(scales)  # type: ignore[assignment]
        # The last scale's prior: learned per position, in the same raw units as the prior
        # networks' outputs.
        top = self.latent_shapes[-1]
        self.top_params = nn.Parameter(torch.zeros(*top, 3 * components))

    @property
    def dims(self) -> int:
        return math.prod(self.shape)

    def _mixture(self, raw: Tensor) -> Tensor:
        """Raw outputs ``(..., 3K)`` of order one -> mixture parameters (``prior``'s layout).

        Zero maps to equal weights, means spread over the centred pixel range and scales of
        a 32nd of it. The gains let small optimiser steps move a mean by tens of levels and
        a scale by orders of magnitude: with unit gains a scale took thousands of steps to
        sharpen from its start (600-step trials on MNIST: 2.53 bits/dim with gain 4 and
        scales of a sixth, 2.12 with these).
        """
        k = self.components
        spread = torch.linspace(-0.4, 0.4, k, device=raw.device, dtype=raw.dtype) * self.n_bins
        return torch.cat([raw[..., :k] * _LOGIT_GAIN,
                          raw[..., k:2 * k] * (self.n_bins / 4.0) + spread,
                          raw[..., 2 * k:] * _LOG_SCALE_GAIN + math.log(self.n_bins / 32)],
                         dim=-1)

    def _prior_params(self, net: nn.Module, h: Tensor, n_out: int) -> Tensor:
        """``(B, n_out, H, W, 3K)`` mixture parameters of a factored-out part, given ``h``."""
        raw = net(h.contiguous() * _IN_SCALE)
        b, _, hh, ww = raw.shape
        k = self.components
        raw = raw.reshape(b, 3 * k, n_out, hh, ww).permute(0, 2, 3, 4, 1)
        return self._mixture(raw)

    def _top_params(self, batch: int) -> Tensor:
        return self._mixture(self.top_params).expand(batch, *self.top_params.shape)

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Levels ``(B, C, H, W)`` (integer-valued) -> the latents ``(B, c_i, h_i, w_i)`` in
        ``latent_shapes`` order (finest first, the per-position part last) and their prior
        parameters ``(B, c_i, h_i, w_i, 3K)``."""
        h = x.to(self.top_params.dtype) - self.offset
        latents, params = [], []
        for scale in self.scales:
            if scale.squeeze:
                h = squeeze2d(h)
            for coupling in scale.couplings:
                h = coupling(h)
            for n_out, net in zip(scale.splits, scale.priors, strict=True):
                z, h = h[:, :n_out], h[:, n_out:]
                latents.append(z)
                params.append(self._prior_params(net, h, n_out))
        latents.append(h)
        params.append(self._top_params(h.shape[0]))
        return latents, params

    def log_prob(self, x: Tensor) -> Tensor:
        """Natural log-probability ``(B,)`` of integer images ``(B, C, H, W)``: the exact
        discrete likelihood, so ``-log_prob / (D ln 2)`` is the ideal code length in bits/dim."""
        latents, params = self(x)
        total = torch.zeros(x.shape[0], dtype=params[0].dtype, device=x.device)
        for z, p in zip(latents, params, strict=True):
            total = total + prior.log_prob(z, p).flatten(1).sum(1)
        return total

    def inverse(self, latents: list[Tensor]) -> Tensor:
        """The latents (as ``forward`` returns them) -> integer levels ``(B, C, H, W)``."""
        return self.decode(latents[0].shape[0], lambda i, p: latents[i])

    def decode(self, batch: int, draw: Callable[[int, Tensor], Tensor]) -> Tensor:
        """Top-down: ``draw(i, params)`` returns latent ``i`` ``(B, *latent_shapes[i])`` given
        its prior parameters; latents come last to first. Returns the levels."""
        dtype, device = self.top_params.dtype, self.top_params.device
        i = len(self.latent_shapes) - 1
        h = draw(i, self._top_params(batch)).to(dtype=dtype, device=device)
        for scale in reversed(self.scales):
            for n_out, net in zip(reversed(scale.splits), reversed(scale.priors), strict=True):
                i -= 1
                z = draw(i, self._prior_params(net, h, n_out)).to(dtype=dtype, device=device)
                h = torch.cat([z, h], dim=1)
            for coupling in reversed(scale.couplings):
                h = coupling.inverse(h)
            if scale.squeeze:
                h = unsqueeze2d(h)
        return h + self.offset

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config.items())

    @classmethod
    def options(cls) -> dict[str, Any]:
        """The model options (``--model-option``) and their defaults, from the signature."""
        params = inspect.signature(cls.__init__).parameters
        return {k: p.default for k, p in params.items() if k not in ("self", "shape", "n_bins")}
