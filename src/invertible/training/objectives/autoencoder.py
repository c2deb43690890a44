"""Bidirectional training of an invertible autoencoder (``--task autoencoder``).

For a batch of images ``x`` (dequantized to ``y`` in [0, 1]) and the ordered latent
``v = order(f(y))`` of ``D`` coordinates, with code size ``k`` (the trained ``code_size``,
or with ``nested`` a per-sample ``k`` drawn from ``{1, 2, 4, ..., code_size}`` half of the
time, so that every shorter prefix is a good code too):

- ``mse``: data-space reconstruction ``|f^-1(v[:k], 0) - y|^2 / D`` (x -> code -> x');
- ``code_mse``: latent-space reconstruction ``|order(f(x'))[:k] - v[:k]|^2 / k``
  (code -> x' -> code': decoding then re-encoding returns the same code);
- ``tail``: ``|v[k:]|^2 / (D - k)``, which keeps the dropped coordinates near the zero fill,
  so that truncation loses little (0 at ``k = D``);
- ``bpd``: the flow's bits/dim of ``y`` (maximum likelihood on the full latent), which keeps
  it a density model, so that sampling works.

The loss is ``w_mse * mse + w_code * code_mse + w_tail * tail + w_nll * bpd`` per sample;
every term is logged in metrics.jsonl (``train_mse``, ...). Reconstruction figures in
evaluation use the bin centres ``(k + 0.5) / n_bins``, not noisy ``y``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from ...core import Sequential
from ...layers.dequantization import make_dequantizer
from ...models.autoencoder import Fill, InvertibleAutoencoder, PCAHead
from ..plots import save_image_grid
from .base import SAMPLE_SEED, DataSpec, Objective, TaskError, fixed_rng, seeded_samples

__all__ = ["AutoencoderObjective", "code_sizes"]


def code_sizes(code_size: int) -> list[int]:
    """``1, 2, 4, ...`` up to ``code_size`` (included): the prefixes ``nested`` trains."""
    sizes = [2**i for i in range(max(code_size.bit_length(), 1)) if 2**i < code_size]
    return [*sizes, code_size]


class AutoencoderObjective(Objective):
    """An ``InvertibleAutoencoder`` on images, trained in both directions (module doc)."""

    task: ClassVar[str] = "autoencoder"
    monitor: ClassVar[str] = "mse"
    monitor_label: ClassVar[str] = "reconstruction MSE"
    progress_metrics: ClassVar[tuple[str, ...]] = ("mse", "code_mse", "bpd")

    def __init__(self, autoencoder: InvertibleAutoencoder, data: DataSpec,
                 dequant: str = "uniform", *, w_mse: float = 1.0, w_code: float = 0.1,
                 w_tail: float = 0.01, w_nll: float = 0.01, nested: bool = True) -> None:
        super().__init__(data)
        if data.kind != "image" or data.n_bins is None:
            raise TaskError("the autoencoder task needs image data")
        for name, w in (("w_mse", w_mse), ("w_code", w_code), ("w_tail", w_tail),
                        ("w_nll", w_nll)):
            if isinstance(w, bool) or not isinstance(w, int | float) or not 0 <= w < math.inf:
                raise TaskError(f"task option {name} must be a number >= 0, got {w!r}")
        self.ae = autoencoder
        self.flow = autoencoder.flow  # for the commands that use the flow as such
        self.dequant = make_dequantizer(dequant, self.shape, data.n_bins)
        self.weights = {"mse": float(w_mse), "code_mse": float(w_code),
                        "tail": float(w_tail), "bpd": float(w_nll)}
        self.nested = bool(nested)
        bij = autoencoder.bijection
        self.has_pca_head = isinstance(bij, Sequential) and isinstance(bij[-1], PCAHead)

    @torch.no_grad()
    def init_from_data(self, x: Tensor, y: Tensor | None = None) -> None:
        """ActNorm's init, then (with a ``PCAHead``) the head set to the principal axes of
        the flow's outputs on this batch, so that training starts from PCA in that space."""
        super().init_from_data(x, y)
        if not self.has_pca_head:
            return
        bij = self.ae.bijection
        assert isinstance(bij, Sequential)
        was = self.training
        self.eval()
        u, _ = bij[0](self.center(x))
        bij[-1].fit_pca_(u)  # type: ignore[operator]
        self.train(was)

    @property
    def code_size(self) -> int:
        return self.ae.code_size

    @torch.no_grad()
    def encode_codes(self, levels: Tensor, k: int) -> Tensor:
        """Levels ``(B, C, H, W)`` -> the first ``k`` ordered latent coordinates ``(B, k)``."""
        return self.ae.encode(self.center(levels), k)

    @torch.no_grad()
    def decode_codes(self, codes: Tensor, fill: Fill = "zeros",
                     temperature: float = 1.0) -> Tensor:
        """Codes ``(N, k)`` -> images in [0, 1]; the dropped coordinates get ``fill``."""
        return self.ae.decode(codes, fill, temperature)

    def metric_names(self) -> list[str]:
        return ["loss", "mse", "code_mse", "tail", "bpd"]

    def _sizes(self, batch: int, device: torch.device) -> Tensor:
        """Per-sample code sizes ``(B,)``: the trained one, or nested prefixes half the time."""
        k = torch.full((batch,), self.code_size, dtype=torch.int64, device=device)
        if self.nested and self.training:
            choices = torch.tensor(code_sizes(self.code_size), device=device)
            pick = choices[torch.randint(len(choices), (batch,), device=device)]
            k = torch.where(torch.rand(batch, device=device) < 0.5, pick, k)
        return k

    def terms(self, y: Tensor, k: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """The per-sample terms for inputs ``y`` in [0, 1] and code sizes ``k (B,)``, and
        the reconstruction ``x'``."""
        ae = self.ae
        v, logdet = ae.latent(y)
        keep = torch.arange(ae.dims, device=y.device)[None, :] < k[:, None]
        x_rec, _ = ae.bijection.inverse(ae.from_ordered(v * keep))
        # A decoded image lives in [0, 1]: the logit's inverse can overshoot slightly, and
        # the re-encoding (code -> x' -> code') must see the image a user would get.
        x_rec = x_rec.clamp(0, 1)
        v_rec, _ = ae.latent(x_rec)
        kf = k.to(v.dtype)
        mse = (x_rec - y).flatten(1).pow(2).mean(1)
        code_mse = ((v_rec - v) * keep).pow(2).sum(1) / kf
        tail = (v * ~keep).pow(2).sum(1) / (ae.dims - kf).clamp_min(1)
        log_p = ae.flow.base.log_prob(ae.from_ordered(v)) + logdet
        bpd = -(log_p - self.dims * math.log(self.n_bins or 1)) / (self.dims * math.log(2))
        return {"mse": mse, "code_mse": code_mse, "tail": tail, "bpd": bpd}, x_rec

    def forward(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        u, log_q = self.dequant(x)
        out, _ = self.terms(u.to(self.dtype), self._sizes(x.shape[0], x.device))
        out["bpd"] = out["bpd"] + log_q.to(out["bpd"]) / (self.dims * math.log(2))
        if not self.training:
            # Reconstruction figures of held-out data use the noise-free bin centres.
            k = torch.full((x.shape[0],), self.code_size, dtype=torch.int64, device=x.device)
            clean, _ = self.terms(self.center(x), k)
            out.update({name: clean[name] for name in ("mse", "code_mse", "tail")})
        out["loss"] = torch.stack([self.weights[name] * out[name]
                                   for name in self.weights]).sum(0)
        return out

    def describe(self, metrics: dict[str, float], split: str) -> list[str]:
        mse = metrics["mse"]
        psnr = 10 * math.log10(1 / mse) if mse > 0 else math.inf
        recon = (f"{split} reconstruction at k={self.code_size} of {self.dims}: MSE {mse:.3e} "
                 f"(PSNR {psnr:.2f} dB), code-space MSE {metrics['code_mse']:.3e}, tail "
                 f"{metrics['tail']:.3e}")
        return [recon, f"{split} bits/dim: {metrics['bpd']:.4f} ({int(metrics['n'])} examples)"]

    # -- evaluation beyond the trained k ---------------------------------------------------
    @torch.no_grad()
    def rate_distortion(self, split: Any, ks: list[int], batch_size: int = 256,
                        limit: int | None = None) -> dict[int, dict[str, float]]:
        """Test error against the code size: ``{k: {"mse", "psnr", "max_abs"}}`` on the bin
        centres of ``split`` (its first ``limit`` examples)."""
        was = self.training
        self.eval()
        n = len(split) if limit is None else min(limit, len(split))
        sums = {k: [0.0, 0.0] for k in ks}
        for start in range(0, n, batch_size):
            xb = split.x[start : min(start + batch_size, n)].to(self.device)
            y = self.center(xb)
            v, _ = self.ae.latent(y)
            for k in ks:
                x_rec = self.ae.decode(v[:, :k]).clamp(0, 1)
                err = (x_rec - y).flatten(1)
                sums[k][0] += float(err.pow(2).mean(1).double().sum())
                sums[k][1] = max(sums[k][1], float(err.abs().max()))
        self.train(was)
        out = {}
        for k, (total, worst) in sums.items():
            mse = total / max(n, 1)
            out[k] = {"mse": mse, "psnr": 10 * math.log10(1 / mse) if mse > 0 else math.inf,
                      "max_abs": worst}
        return out

    def diagnostics(self, split: Any, batch_size: int) -> dict[str, float]:
        """The rate-distortion curve on ``split``: ``mse@k``, ``psnr@k``, ``max_abs@k``."""
        curve = self.rate_distortion(split, self.report_ks(), batch_size)
        return {f"{name}@{k}": v[name] for k, v in curve.items() for name in v}

    def describe_diagnostics(self, extra: dict[str, float]) -> list[str]:
        lines = ["rate-distortion (k: MSE, PSNR dB, max abs error):"]
        for k in self.report_ks():
            lines.append(f"  k={k:>5}: {extra[f'mse@{k}']:.3e}, {extra[f'psnr@{k}']:.2f}, "
                         f"{extra[f'max_abs@{k}']:.2e}"
                         + ("  (lossless: the full latent)" if k == self.dims else ""))
        return lines

    def report_ks(self) -> list[int]:
        """The code sizes the rate-distortion figure shows: powers of 2 below k, k and D."""
        return sorted({*code_sizes(self.code_size), self.dims})

    # -- pictures ---------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> Tensor:
        return self.to_levels(self.ae.sample(n, temperature)).cpu()

    @torch.no_grad()
    def reconstruction_grid(self, levels: Tensor, ks: list[int]) -> np.ndarray:
        """Rows: originals, then reconstructions at each ``k`` (integer levels)."""
        y = self.center(levels.to(self.device))
        v, _ = self.ae.latent(y)
        rows = [levels.cpu()] + [self.to_levels(self.ae.decode(v[:, :k])).cpu() for k in ks]
        return torch.cat(rows).numpy()

    def write_artifacts(self, folder: Path, name: str, n: int,
                        preview: Any = None) -> list[Path]:
        assert self.n_bins is not None
        out = []
        samples = seeded_samples(self, n, 1.0, SAMPLE_SEED).numpy()
        path = folder / "samples" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        out.append(save_image_grid(samples, self.n_bins, path))
        if preview is not None and len(preview):
            m = min(10, len(preview))
            ks = [k for k in code_sizes(self.code_size) if k >= 2][-3:]
            grid = self.reconstruction_grid(preview.x[:m], ks)
            path = folder / "reconstructions" / f"{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            out.append(save_image_grid(grid, self.n_bins, path, nrow=m))
        return out

    def write_final(self, folder: Path, n: int, preview: Any = None) -> list[Path]:
        out = self.write_artifacts(folder, "final", n, preview)
        if preview is not None and len(preview):
            from ..plots import save_rate_distortion

            with fixed_rng(0, self.device):
                curve = self.rate_distortion(preview, self.report_ks(), limit=1000)
            out.append(save_rate_distortion(
                {k: v["mse"] for k, v in curve.items()}, folder / "rate_distortion.png",
                title=f"held-out MSE against code size (trained k={self.code_size})"))
        return out
