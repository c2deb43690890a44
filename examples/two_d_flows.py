"""Fit RealNVP to two 2-D densities (two moons, concentric rings) and plot what it learned.

For each dataset: a vector RealNVP (``build_realnvp_2d``) trained by maximum likelihood,
then a figure with the training data, the learned density on a grid and samples from the
flow, written as ``<out>/two_d_<name>.png``. The script checks a numeric claim: on
held-out points the flow's mean log-likelihood beats the best Gaussian fit by at least
``MARGIN[name]`` nats per point (a Gaussian cannot represent either shape).

Measured at the defaults (seed 0, one thread, ~25 s in all): moons -1.19 vs Gaussian
-2.72; rings -2.34 vs -3.05. Rotationally symmetric densities are a known weak spot of
axis-aligned affine couplings in 2-D (the rings come out smeared), hence the smaller
margin there; more depth and steps sharpen them.

    python examples/two_d_flows.py --out examples/output
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import make_moons

from invertible import Flow
from invertible.models.realnvp import build_realnvp_2d
from invertible.training.plots import save_figure

# Nats per point by which the flow must beat a Gaussian on held-out data.
MARGIN = {"moons": 1.0, "rings": 0.4}


def moons(n: int, rng: np.random.Generator) -> np.ndarray:
    x, _ = make_moons(n, noise=0.05, random_state=int(rng.integers(2**31 - 1)))
    return (x - np.array([0.5, 0.25])) / np.array([0.87, 0.5])


def rings(n: int, rng: np.random.Generator) -> np.ndarray:
    """Two concentric rings (radii 0.8, 1.8), points in proportion to circumference."""
    radii = np.array([0.8, 1.8])
    which = rng.choice(len(radii), size=n, p=radii / radii.sum())
    angle = rng.uniform(0, 2 * np.pi, size=n)
    r = radii[which] + 0.1 * rng.standard_normal(n)
    return np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)


DATASETS = {"moons": moons, "rings": rings}


def fit(train: torch.Tensor, steps: int, depth: int, hidden: int, seed: int) -> Flow:
    torch.manual_seed(seed)
    flow = build_realnvp_2d(2, depth=depth, hidden=hidden)
    opt = torch.optim.Adam(flow.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = train[torch.randint(0, len(train), (256,), generator=g)]
        loss = -flow.log_prob(batch).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return flow.eval()



def plot(name: str, flow: Flow, train: torch.Tensor, ll: float, gauss_ll: float, path: Path):
    lim = 2.6
    grid = torch.linspace(-lim, lim, 200)
    gx, gy = torch.meshgrid(grid, grid, indexing="xy")
    with torch.no_grad():
        density = flow.log_prob(torch.stack([gx.flatten(), gy.flatten()], 1)).exp()
        samples = flow.sample(2000).numpy()
    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    axes[0].scatter(*train[:2000].numpy().T, s=2, alpha=0.5)
    axes[0].set_title(f"{name}: training data")
    axes[1].imshow(
        density.reshape(200, 200).numpy(),
        origin="lower",
        extent=(-lim, lim, -lim, lim),
        cmap="viridis",
    )
    axes[1].set_title(
        f"learned density (held-out LL {ll:.2f}, Gaussian {gauss_ll:.2f})", fontsize=9
    )
    axes[2].scatter(*samples.T, s=2, alpha=0.5, color="C1")
    axes[2].set_title("samples from the flow")
    for ax in axes:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples/output"))
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    for i, (name, make) in enumerate(DATASETS.items()):
        start = time.perf_counter()
        rng = np.random.default_rng([args.seed, i])
        train = torch.tensor(make(4000, rng), dtype=torch.float32)
        test = torch.tensor(make(2000, rng), dtype=torch.float32)
        flow = fit(train, args.steps, depth=8, hidden=64, seed=args.seed)
        gauss = torch.distributions.MultivariateNormal(train.mean(0), torch.cov(train.T))
        with torch.no_grad():
            ll = flow.log_prob(test).mean().item()
        gauss_ll = gauss.log_prob(test).mean().item()
        path = args.out / f"two_d_{name}.png"
        plot(name, flow, train, ll, gauss_ll, path)
        print(
            f"{name}: held-out log-likelihood flow {ll:.3f} vs Gaussian {gauss_ll:.3f} "
            f"nats/point ({time.perf_counter() - start:.1f} s) -> {path}"
        )
        assert ll > gauss_ll + MARGIN[name], (
            f"{name}: flow ({ll:.3f}) does not beat a Gaussian ({gauss_ll:.3f}) by {MARGIN[name]}"
        )


if __name__ == "__main__":
    main()
