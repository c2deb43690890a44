"""The Flow-VAE's objective (``--task vae``): the negative ELBO, with KL warm-up and free
bits, and the importance-weighted bound as the test NLL estimate.

Per image, with ``z ~ q(z | x)`` (one sample), ``rec = -log p(x | z)`` and the Monte
Carlo KL ``kl = log q(z | x) - log p(z)``:

- ``nelbo = rec + kl`` in nats (an upper bound on ``-log p(x)``);
- ``loss = rec + beta * kl_fb`` with ``beta`` rising linearly from 0 to 1 over
  ``kl_warmup`` training steps, and free bits (Kingma et al. 2016): ``kl_fb`` is the
  batch's mean KL when that is at least ``free_bits * latent`` nats, else the constant
  ``free_bits * latent`` (no gradient). The floor is on the whole latent, not per
  dimension: a flow posterior's KL does not split into dimensions.

Data: with the ``bernoulli`` likelihood the grey levels are dynamically binarized, each
pixel drawn as 1 with probability ``level / (n_bins - 1)``, afresh for every batch
(evaluation draws from a fixed seed); with ``logistic`` the levels are modelled as they
are, and ``bpd = nelbo / (D ln 2)`` is an upper bound on the discrete bits/dim.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from ...models.vae import VAE
from ..plots import save_image_grid
from .base import EVAL_SEED, SAMPLE_SEED, DataSpec, Objective, TaskError, fixed_rng, seeded_samples

__all__ = ["VAEObjective", "active_units"]

#: A latent unit is active when the variance over x of its posterior mean exceeds this
#: (Burda et al. 2016).
ACTIVE_UNIT_THRESHOLD = 0.01


class VAEObjective(Objective):
    """A ``VAE`` trained on the ELBO; ``forward`` gives ``{"loss", "nelbo", "rec", "kl"}``
    (and ``"bpd"`` for the logistic likelihood), each ``(B,)`` in nats."""

    task: ClassVar[str] = "vae"
    monitor: ClassVar[str] = "nelbo"
    monitor_label: ClassVar[str] = "-ELBO (nats)"
    progress_metrics: ClassVar[tuple[str, ...]] = ("nelbo", "kl")
    steps_seen: Tensor

    def __init__(self, vae: VAE, data: DataSpec, *, kl_warmup: int = 0,
                 free_bits: float = 0.0, iwae_k: int = 1000) -> None:
        super().__init__(data)
        if data.kind != "image" or data.n_bins is None:
            raise TaskError("the vae task needs image data")
        if isinstance(kl_warmup, bool) or not isinstance(kl_warmup, int) or kl_warmup < 0:
            raise TaskError(f"task option kl_warmup must be an integer >= 0 (steps), got "
                            f"{kl_warmup!r}")
        if isinstance(free_bits, bool) or not isinstance(free_bits, int | float) or not (
                0 <= free_bits < math.inf):
            raise TaskError(f"task option free_bits must be a number >= 0 (nats per latent "
                            f"dimension), got {free_bits!r}")
        self.vae = vae
        self.kl_warmup = kl_warmup
        self.free_bits = float(free_bits)
        self.iwae_k = iwae_k
        # Counts training batches for the warm-up; a buffer, so that it resumes.
        self.register_buffer("steps_seen", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def init_from_data(self, x: Tensor, y: Tensor | None = None) -> None:
        """Nothing to initialise from data (no ActNorm); skipping the pass also keeps the
        warm-up's step count exact."""

    @property
    def logistic(self) -> bool:
        return self.vae.likelihood.name == "logistic"

    @property
    def evaluation_note(self) -> str:
        """How ``evaluate`` sees the data, for its report."""
        if self.logistic:
            return "grey levels, discretized logistic likelihood"
        return "dynamically binarized with a fixed seed, Bernoulli likelihood"

    def metric_names(self) -> list[str]:
        return ["loss", "nelbo", "rec", "kl"] + (["bpd"] if self.logistic else [])

    def observe(self, levels: Tensor) -> Tensor:
        """Integer levels -> the likelihood's data: binarized pixels (drawn now) or levels."""
        assert self.n_bins is not None
        if self.logistic:
            return levels.to(self.dtype)
        return torch.bernoulli(levels.to(self.dtype) / (self.n_bins - 1))

    def beta(self) -> float:
        """The KL weight now: ``steps_seen / kl_warmup``, capped at 1."""
        if self.kl_warmup == 0:
            return 1.0
        return min(1.0, int(self.steps_seen) / self.kl_warmup)

    def forward(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        data = self.observe(x)
        log_px, kl = self.vae.elbo_terms(data)
        rec = -log_px
        kl_term = kl
        if self.training:
            floor = self.free_bits * self.vae.latent
            if floor > 0 and float(kl.detach().mean()) < floor:
                kl_term = torch.full_like(kl, floor)
            loss = rec + self.beta() * kl_term
            self.steps_seen += 1
        else:
            loss = rec + kl
        out = {"loss": loss, "nelbo": rec + kl, "rec": rec, "kl": kl}
        if self.logistic:
            out["bpd"] = (rec + kl).detach() / (self.dims * math.log(2.0))
        return out

    def describe(self, metrics: dict[str, float], split: str) -> list[str]:
        n = int(metrics["n"])
        ci = 1.96 * metrics["nelbo_std"] / math.sqrt(max(n, 1))
        lines = [(f"{split} -ELBO: {metrics['nelbo']:.2f} ± {ci:.2f} nats (95% CI over {n} "
                  f"examples); reconstruction {metrics['rec']:.2f}, KL {metrics['kl']:.2f}")]
        if self.logistic:
            lines.append(f"{split} ELBO bits/dim: {metrics['bpd']:.4f} (an upper bound)")
        return lines

    # -- evaluation beyond the ELBO ----------------------------------------------------------
    @torch.no_grad()
    def iwae_nll(self, split: Any, k: int, batch_size: int = 64) -> Tensor:
        """``-IWAE_k`` in nats per example of ``split`` ``(N,)`` (float64); the
        binarization and the posterior samples come from a fixed seed."""
        was = self.training
        self.eval()
        values = []
        # k samples of every image go through the decoder at once; keep that near 6400.
        rows = max(1, min(batch_size, 6400 // min(k, 100)))
        with fixed_rng(EVAL_SEED, self.device):
            for start in range(0, len(split), rows):
                idx = torch.arange(start, min(start + rows, len(split)))
                levels, _ = split.batch(idx, self.device)
                values.append(-self.vae.iwae(self.observe(levels), k).double().cpu())
        self.train(was)
        return torch.cat(values)

    def diagnostics(self, split: Any, batch_size: int) -> dict[str, float]:
        v = self.iwae_nll(split, self.iwae_k, batch_size)
        nll, std = float(v.mean()), float(v.std()) if len(v) > 1 else 0.0
        out = {"iwae_k": float(self.iwae_k), "nll": nll, "nll_std": std,
               "nll_n": float(len(v)),
               "active_units": float(active_units(self, split, batch_size))}
        if self.logistic:
            out["nll_bpd"] = nll / (self.dims * math.log(2.0))
        return out

    def describe_diagnostics(self, extra: dict[str, float]) -> list[str]:
        n = int(extra["nll_n"])
        ci = 1.96 * extra["nll_std"] / math.sqrt(max(n, 1))
        lines = [(f"NLL estimate (-IWAE, k={int(extra['iwae_k'])}): {extra['nll']:.2f} ± "
                  f"{ci:.2f} nats over {n} examples")]
        if "nll_bpd" in extra:
            lines.append(f"NLL estimate in bits/dim: {extra['nll_bpd']:.4f}")
        lines.append(f"active latent units: {int(extra['active_units'])} of "
                     f"{self.vae.latent} (Cov_x E_q[z|x] > {ACTIVE_UNIT_THRESHOLD})")
        return lines

    # -- codes (reduce / reconstruct) ------------------------------------------------------
    @property
    def code_size(self) -> int:
        return self.vae.latent

    @torch.no_grad()
    def encode_codes(self, levels: Tensor, k: int) -> Tensor:
        """Levels ``(B, C, H, W)`` -> posterior means ``(B, latent)`` (binarized at
        probability 1/2 for the Bernoulli model, deterministically)."""
        if k != self.vae.latent:
            raise TaskError(f"a VAE's codes are its {self.vae.latent} latent dimensions; "
                            f"-k {k} is not available (its latents are not ordered)")
        data = self.observe_deterministic(levels)
        with fixed_rng(EVAL_SEED, self.device):
            return self.vae.posterior_mean(data)

    def observe_deterministic(self, levels: Tensor) -> Tensor:
        """Like ``observe``, with pixels thresholded at half the range instead of drawn."""
        assert self.n_bins is not None
        if self.logistic:
            return levels.to(self.dtype)
        return (levels.to(self.dtype) >= (self.n_bins - 1) / 2).to(self.dtype)

    @torch.no_grad()
    def decode_codes(self, codes: Tensor, fill: str = "zeros",
                     temperature: float = 1.0) -> Tensor:
        """Codes ``(N, latent)`` -> mean images in [0, 1] ``(N, C, H, W)``."""
        if codes.shape[1] != self.vae.latent:
            raise TaskError(f"a VAE decodes codes of width {self.vae.latent}, got "
                            f"{codes.shape[1]}")
        return self.vae.mean_image(codes)

    # -- pictures ------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> Tensor:
        """Decoder means of ``z ~ N(0, T^2 I)`` as levels ``(n, C, H, W)``."""
        z = temperature * torch.randn(n, self.vae.latent, device=self.device, dtype=self.dtype)
        return self.to_levels(self.vae.mean_image(z)).cpu()

    @torch.no_grad()
    def reconstructions(self, levels: Tensor) -> Tensor:
        """Levels -> decoder means of one posterior sample each, as levels."""
        levels = levels.to(self.device)
        z, _ = self.vae.posterior_sample(self.observe(levels), 1)
        return self.to_levels(self.vae.mean_image(z[0])).cpu()

    def write_artifacts(self, folder: Path, name: str, n: int,
                        preview: Any = None) -> list[Path]:
        assert self.n_bins is not None
        samples = seeded_samples(self, n, 1.0, SAMPLE_SEED).numpy()
        path = folder / "samples" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        out = [save_image_grid(samples, self.n_bins, path)]
        if preview is not None and len(preview):
            m = min(10, len(preview))
            was = self.training
            self.eval()
            with fixed_rng(SAMPLE_SEED, self.device):
                rec = self.reconstructions(preview.x[:m])
            self.train(was)
            grid = torch.cat([preview.x[:m].cpu(), rec]).numpy()
            path = folder / "reconstructions" / f"{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            out.append(save_image_grid(grid, self.n_bins, path, nrow=m))
        return out


@torch.no_grad()
def active_units(objective: VAEObjective, split: Any, batch_size: int = 256,
                 limit: int = 2000) -> int:
    """Latent dimensions whose posterior mean varies over the data (variance above
    ``ACTIVE_UNIT_THRESHOLD``), on the first ``limit`` examples."""
    n = min(limit, len(split))
    means = []
    with fixed_rng(EVAL_SEED, objective.device):
        for start in range(0, n, batch_size):
            levels, _ = split.batch(torch.arange(start, min(start + batch_size, n)),
                                    objective.device)
            means.append(objective.vae.posterior_mean(objective.observe(levels)).double())
    m = torch.cat(means)
    if len(m) < 2:
        return 0
    return int((m.var(dim=0) > ACTIVE_UNIT_THRESHOLD).sum())
