"""Reconstruction attacks on released codes, and the image-quality figures that score them.

- **Known-plaintext**: the attacker holds n (image, code) pairs and trains a decoder code ->
  image by mean squared error (an MLP, or a small conv net).
- **Architecture-only**: the attacker has the architecture and config but not the weights,
  and decodes with freshly initialised or independently trained models of that architecture.

Images are compared in ``[0, 1]`` (level ``k`` -> ``k / (n_bins - 1)``): PSNR per image with
data range 1, then the mean over images; SSIM (scikit-image) likewise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ConvDecoder",
    "MLPDecoder",
    "conv_width",
    "decode_to_unit",
    "fresh_models",
    "make_decoder",
    "psnr",
    "ssim",
    "train_decoder",
]


# -- image quality ----------------------------------------------------------------------------
def psnr(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Per-image PSNR in dB of images in ``[0, 1]`` ``(N, ...)`` (data range 1); ``inf`` where
    an estimate equals its reference exactly."""
    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    est = np.asarray(estimate, dtype=np.float64).reshape(len(estimate), -1)
    mse = np.mean((ref - est) ** 2, axis=1)
    with np.errstate(divide="ignore"):
        return np.where(mse > 0, -10.0 * np.log10(np.maximum(mse, 1e-300)), np.inf)


def ssim(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Per-image SSIM of ``(N, C, H, W)`` images in ``[0, 1]`` (scikit-image, data range 1,
    the largest odd window up to 7 that fits the image)."""
    from skimage.metrics import structural_similarity

    ref = np.asarray(reference, dtype=np.float64)
    est = np.asarray(estimate, dtype=np.float64)
    h, w = ref.shape[-2:]
    win = min(7, h, w)
    win -= 1 - win % 2
    if win < 3:
        raise ValueError(f"images of {h}x{w} are too small for SSIM (needs 3x3)")
    out = np.empty(len(ref))
    for i in range(len(ref)):
        a, b = ref[i], est[i]
        if a.shape[0] == 1:
            out[i] = structural_similarity(a[0], b[0], data_range=1.0, win_size=win)
        else:
            out[i] = structural_similarity(a, b, data_range=1.0, win_size=win, channel_axis=0)
    return out


def decode_to_unit(model_space: Tensor, n_bins: int) -> tuple[np.ndarray, int]:
    """A flow's decode in model space (bin-centre scale) -> images in ``[0, 1]`` as its levels
    would show them, and the number of images with a non-finite value (set to 0.5 there; the
    rest clamped to ``[0, 1]`` before flooring to levels)."""
    x = model_space.double()
    bad = ~torch.isfinite(x).reshape(len(x), -1).all(dim=1)
    x = torch.nan_to_num(x, nan=0.5, posinf=1.0, neginf=0.0).clamp(0.0, 1.0)
    levels = torch.clamp(torch.floor(x * n_bins), 0, n_bins - 1)
    return (levels / (n_bins - 1)).numpy(), int(bad.sum())


# -- known-plaintext decoders -----------------------------------------------------------------
class MLPDecoder(nn.Module):
    """Code ``(N, D)`` -> image ``(N, C, H, W)`` in ``[0, 1]``: D -> hidden -> hidden -> CHW."""

    def __init__(self, dims: int, shape: Sequence[int], hidden: int = 1024) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.net = nn.Sequential(nn.Linear(dims, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                 nn.ReLU(), nn.Linear(hidden, math.prod(self.shape)))

    def forward(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.net(z)).reshape(len(z), *self.shape)


class ConvDecoder(nn.Module):
    """Code -> a ``width x ceil(H/4) x ceil(W/4)`` feature map -> two (upsample x2, 3x3 conv)
    stages -> a 3x3 conv to C channels, cropped to ``H x W``, sigmoid."""

    def __init__(self, dims: int, shape: Sequence[int], width: int = 64) -> None:
        super().__init__()
        self.shape = tuple(shape)
        c, h, w = self.shape
        self.h0, self.w0, self.width = -(-h // 4), -(-w // 4), width
        self.fc = nn.Linear(dims, width * self.h0 * self.w0)
        self.up = nn.Sequential(
            nn.ReLU(), nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(width, width // 2, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width // 2, c, 3, padding=1),
        )

    def forward(self, z: Tensor) -> Tensor:
        f = self.fc(z).reshape(len(z), self.width, self.h0, self.w0)
        _, h, w = self.shape
        return torch.sigmoid(self.up(f)[:, :, :h, :w])


def conv_width(hidden: int) -> int:
    """The conv decoder's channel width for an MLP width ``hidden``: hidden / 16 in [16, 64]."""
    return max(16, min(64, hidden // 16))


def make_decoder(kind: str, dims: int, shape: Sequence[int], hidden: int = 1024) -> nn.Module:
    """``"mlp"`` or ``"conv"`` decoder for codes of ``dims`` and images of ``shape``."""
    if kind == "mlp":
        return MLPDecoder(dims, shape, hidden)
    if kind == "conv":
        return ConvDecoder(dims, shape, width=conv_width(hidden))
    raise ValueError(f"unknown decoder '{kind}' (mlp or conv)")


def train_decoder(kind: str, codes: Tensor, images: Tensor, steps: int, *,
                  hidden: int = 1024, batch_size: int = 64, lr: float = 1e-3,
                  seed: int = 0, mean: Tensor | None = None, std: Tensor | None = None,
                  device: torch.device | str = "cpu") -> Any:
    """Train a ``kind`` decoder on pairs (codes ``(n, D)``, images ``(n, C, H, W)`` in
    ``[0, 1]``) by MSE with Adam for ``steps`` minibatch steps on ``device``; returns
    ``predict(codes) -> images`` (numpy). Codes are standardised with ``mean``/``std``
    (default: the pairs' own)."""
    device = torch.device(device)
    codes = codes.float().to(device)
    images = images.float().to(device)
    mean = codes.mean(0) if mean is None else mean.float().to(device)
    std = codes.std(0, unbiased=False) if std is None else std.float().to(device)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = make_decoder(kind, codes.shape[1], tuple(images.shape[1:]), hidden).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    u = (codes - mean) / std
    n = len(u)
    net.train()
    for _ in range(steps):
        idx = torch.randint(n, (min(batch_size, n),), generator=g).to(device)
        loss = F.mse_loss(net(u[idx]), images[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()

    @torch.no_grad()
    def predict(z: Tensor) -> np.ndarray:
        v = (z.float().to(device) - mean) / std
        out = [net(v[s : s + 512]).double().cpu() for s in range(0, len(v), 512)]
        return torch.cat(out).numpy()

    return predict


# -- architecture-only ------------------------------------------------------------------------
def fresh_models(config: Any, data: dict[str, Any], seeds: Sequence[int], public_x: Tensor,
                 public_y: Tensor | None, device: torch.device) -> list[Any]:
    """Objectives of the run's architecture (its config, the model registry), freshly
    initialised with each seed; data-dependent init (ActNorm) on ``public_x`` only."""
    from ..training.objectives import build_objective, fixed_rng

    out = []
    for seed in seeds:
        with fixed_rng(seed, device):
            obj = build_objective(config, data).to(device)
            obj.init_from_data(public_x.to(device),
                               public_y.to(device) if public_y is not None else None)
        out.append(obj.eval())
    return out
