"""A 2-D linear flow: x = J z with J = [[3, 1], [0, 2]], det J = 6.

J maps the unit square to a parallelogram of area |det J| = 6, and the density of x is the
base density divided by 6: p_x(J z) = p_z(z) / 6. The script checks the area with the
shoelace formula and the density ratio with ``Flow.log_prob``, and plots both spaces.

    python examples/linear_2d.py --out examples/output
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from invertible import Flow, Inverse, InvertibleConv1x1, StandardNormal
from invertible.training.plots import save_figure


def shoelace_area(polygon: torch.Tensor) -> float:
    """Area of a simple polygon given as ``(N, 2)`` vertices in order."""
    x, y = polygon[:, 0], polygon[:, 1]
    return 0.5 * abs((x * y.roll(-1) - x.roll(-1) * y).sum().item())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "output")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    jac = torch.tensor([[3.0, 1.0], [0.0, 2.0]], dtype=torch.float64)
    generative = InvertibleConv1x1.from_matrix(jac)  # z -> J z, with log-det log 6
    flow = Flow(Inverse(generative), StandardNormal((2,))).double()

    with torch.no_grad():
        torch.testing.assert_close(generative.weight(), jac, rtol=0, atol=1e-14)
        square = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
        parallelogram, _ = flow.bijection.inverse(square)  # latent -> data: J z
        area = shoelace_area(parallelogram)
        print(f"unit square -> parallelogram {parallelogram.tolist()}, area {area:.12f}")
        assert abs(area - 6.0) < 1e-12, area

        z = torch.randn(1000, 2, dtype=torch.float64)
        x, _ = flow.bijection.inverse(z)
        ratio = (flow.log_prob(x) - flow.base.log_prob(z)).exp()
        print(
            f"p_x(Jz) / p_z(z): min {ratio.min().item():.12f}, max {ratio.max().item():.12f}"
            f" (1/6 = {1 / 6:.12f})"
        )
        assert (ratio - 1 / 6).abs().max().item() < 1e-12
        # And the density is the Gaussian N(0, J J^T), written out by hand.
        cov = jac @ jac.T
        quad = (x @ torch.linalg.inv(cov) * x).sum(1)
        by_hand = -0.5 * quad - math.log(2 * math.pi) - 0.5 * math.log(torch.det(cov).item())
        assert (flow.log_prob(x) - by_hand).abs().max().item() < 1e-12

    # Plot the two spaces with the mapped square and the two densities.
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.8))
    g = torch.linspace(-8, 8, 300, dtype=torch.float64)
    gx, gy = torch.meshgrid(g, g, indexing="xy")
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    with torch.no_grad():
        pz = flow.base.log_prob(grid).exp().reshape(300, 300)
        px = flow.log_prob(grid).exp().reshape(300, 300)
    vmax = pz.max().item()
    for ax, dens, poly, title in (
        (axes[0], pz, square, "latent z ~ N(0, I): unit square, area 1"),
        (axes[1], px, parallelogram, f"data x = Jz: parallelogram, area {area:.3g}"),
    ):
        ax.contourf(gx, gy, dens, levels=20, cmap="viridis", vmin=0, vmax=vmax)
        closed = torch.cat([poly, poly[:1]])
        ax.plot(closed[:, 0], closed[:, 1], "w-", lw=2)
        ax.set_title(title, fontsize=10)
        ax.set_aspect("equal")
        ax.set_xlim(-6, 8)
        ax.set_ylim(-6, 8)
    axes[1].text(
        -5.5, -5.5, "peak density = 1/6 of the latent's (same colour scale)", color="w", fontsize=8
    )
    fig.tight_layout()
    path = args.out / "linear_2d.png"
    save_figure(fig, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
