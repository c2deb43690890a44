"""The log-normal distribution as a flow: x = exp(z) with z ~ N(0, 1).

The bijection data -> latent is z = log x, i.e. ``Inverse(Exp())``, with log-det -log x, so
p(x) = N(log x; 0, 1) / x. The script checks ``Flow.log_prob`` against the analytic
log-normal density (and scipy's, when scipy is installed) and plots it with samples.

    python examples/lognormal.py --out examples/output
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from invertible import Exp, Flow, InvalidInputError, Inverse, StandardNormal
from invertible.training.plots import save_figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "output")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    flow = Flow(Inverse(Exp()), StandardNormal((1,))).double()

    x = torch.logspace(-4, 2.5, 20_001, dtype=torch.float64)
    with torch.no_grad():
        density = flow.log_prob(x[:, None]).exp()
    analytic = torch.exp(-(torch.log(x) ** 2) / 2) / (x * math.sqrt(2 * math.pi))
    err = (density - analytic).abs().max().item()
    print(f"max |p_flow - analytic log-normal pdf|: {err:.2e}")
    assert err < 1e-6, err
    try:
        from scipy.stats import lognorm
    except ImportError:
        print("scipy not installed: skipped the scipy comparison")
    else:
        err_scipy = (density - torch.from_numpy(lognorm(s=1.0).pdf(x.numpy()))).abs().max().item()
        print(f"max |p_flow - scipy.stats.lognorm(s=1).pdf|: {err_scipy:.2e}")
        assert err_scipy < 1e-6, err_scipy
    # In log-space (dx = x d(log x)) the density integrates to 1.
    total = torch.trapezoid(density * x, torch.log(x)).item()
    print(f"integral of p_flow over [1e-4, 10^2.5]: {total:.9f}")
    assert abs(total - 1.0) < 1e-6, total  # the tails beyond the grid hold about 4e-9

    # Negative data lies outside the support: the flow refuses it rather than answer nan.
    try:
        flow.log_prob(torch.tensor([[-1.0]], dtype=torch.float64))
    except InvalidInputError as e:
        print(f"log_prob(-1) refused: {e}")
    else:  # pragma: no cover - would be a library bug
        raise AssertionError("log_prob of a negative value should raise")

    samples = flow.sample(20_000)[:, 0]
    median = samples.median().item()
    print(f"sample median {median:.3f} (analytic 1)")
    assert abs(median - 1.0) < 0.05

    fig, ax = plt.subplots(figsize=(7, 4))
    keep = x < 8
    ax.hist(
        samples[samples < 8].numpy(),
        bins=120,
        density=True,
        alpha=0.3,
        label="flow samples (x < 8)",
    )
    ax.plot(x[keep], density[keep], lw=3, alpha=0.6, label="flow density")
    ax.plot(x[keep], analytic[keep], "k--", lw=1, label="log-normal pdf")
    ax.set_xlim(0, 8)
    ax.set_title("x = exp(z): p(x) = N(log x) / x")
    ax.set_xlabel("x")
    ax.legend()
    fig.tight_layout()
    path = args.out / "lognormal.png"
    save_figure(fig, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
