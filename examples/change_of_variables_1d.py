"""Change of variables in 1-D: push N(0, 1) through x = 2 z + 3.

The flow's density is p_x(x) = p_z((x - 3) / 2) * |dz/dx| = N(x; 3, 2^2). The script checks
that ``Flow.log_prob`` equals the N(3, 4) density on a grid and that it integrates to 1, and
plots both densities with a histogram of samples.

    python examples/change_of_variables_1d.py --out examples/output
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from invertible import Flow, Inverse, Scale, StandardNormal
from invertible.training.plots import save_figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "output")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    # Scale(2, 3) is the generative map z -> 2 z + 3; the flow's bijection goes data -> latent.
    flow = Flow(Inverse(Scale(2.0, shift=3.0)), StandardNormal((1,))).double()

    x = torch.linspace(-27.0, 33.0, 600_001, dtype=torch.float64)
    with torch.no_grad():
        density = flow.log_prob(x[:, None]).exp()
    reference = torch.exp(-((x - 3) ** 2) / 8) / math.sqrt(2 * math.pi * 4)
    max_err = (density - reference).abs().max().item()
    total = torch.trapezoid(density, x).item()
    print(f"max |p_flow - N(3, 4) pdf| on the grid: {max_err:.2e}")
    print(f"integral of p_flow over [-27, 33]:      {total:.12f}")
    assert max_err < 1e-12, max_err
    assert abs(total - 1.0) < 1e-6, total

    samples = flow.sample(20_000)[:, 0]
    print(f"sample mean {samples.mean().item():.3f} (3), std {samples.std().item():.3f} (2)")
    assert abs(samples.mean().item() - 3) < 0.1 and abs(samples.std().item() - 2) < 0.1

    z = torch.linspace(-4, 4, 400, dtype=torch.float64)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(z, torch.exp(-(z**2) / 2) / math.sqrt(2 * math.pi), label="base N(0, 1)")
    keep = (x > -5) & (x < 11)
    ax.plot(x[keep][::100], density[keep][::100], lw=3, alpha=0.6, label="flow density")
    ax.plot(x[keep][::100], reference[keep][::100], "k--", lw=1, label="N(3, 4) pdf")
    ax.hist(samples.numpy(), bins=80, density=True, alpha=0.3, label="flow samples")
    ax.set_title(f"x = 2z + 3: p(x) = p(z) / 2, integral = {total:.9f}")
    ax.set_xlabel("value")
    ax.legend()
    fig.tight_layout()
    path = args.out / "change_of_variables_1d.png"
    save_figure(fig, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
