"""Density estimation end to end: a seeded RealNVP learns the two-moons density.

Calibration (seeded, one thread, this configuration: depth 6, width 48, 1200 Adam steps,
about 6 s): on held-out points the fitted flow reaches a mean log-likelihood of -1.19
nats; the best Gaussian (sample mean and covariance of the training set) gets -2.72, and
the untrained flow (the standard normal base) -2.83. The threshold -1.75 sits between
them with a margin on both sides. The sample check is a kernel two-sample test (MMD,
permutation-calibrated, 500 vs 500 points): flow samples give p = 0.85 against held-out
data (0.06 to 0.98 over other sampling seeds), while samples from the fitted Gaussian are
rejected at the smallest attainable p (1/401); the test asserts the first is not rejected
at 1% and that the second is, so it also shows that the check has power.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import make_moons

from invertible.models.realnvp import build_realnvp_2d

SCALE = np.array([0.87, 0.5])  # standardises the moons (std per coordinate)
LL_THRESHOLD = -1.75
N_PERMUTATIONS = 400


def moons(n: int, seed: int) -> torch.Tensor:
    x, _ = make_moons(n, noise=0.05, random_state=seed)
    return torch.tensor((x - np.array([0.5, 0.25])) / SCALE, dtype=torch.float32)


def mmd_permutation_test(x: torch.Tensor, y: torch.Tensor, bandwidth: float, seed: int = 0):
    """Unbiased MMD^2 with a Gaussian kernel and its permutation p-value."""
    xy = torch.cat([x, y])
    k = torch.exp(-(torch.cdist(xy, xy) ** 2) / (2 * bandwidth**2))
    n = len(x)

    def stat(order: torch.Tensor) -> float:
        a, b = order[:n], order[n:]
        kxx, kyy, kxy = k[a][:, a], k[b][:, b], k[a][:, b]
        m = len(b)
        within_x = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
        within_y = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
        return (within_x + within_y - 2 * kxy.mean()).item()

    observed = stat(torch.arange(len(xy)))
    g = torch.Generator().manual_seed(seed)
    null = [stat(torch.randperm(len(xy), generator=g)) for _ in range(N_PERMUTATIONS)]
    p = (1 + sum(v >= observed for v in null)) / (N_PERMUTATIONS + 1)
    return observed, p


@pytest.fixture(scope="module")
def fitted():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        train, test = moons(2000, seed=1), moons(1000, seed=2)
        flow = build_realnvp_2d(2, depth=6, hidden=48)
        untrained_ll = flow.log_prob(test).mean().item()
        steps = 1200
        opt = torch.optim.Adam(flow.parameters(), lr=3e-3)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        g = torch.Generator().manual_seed(0)
        for _ in range(steps):
            batch = train[torch.randint(0, len(train), (256,), generator=g)]
            loss = -flow.log_prob(batch).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        flow.eval()
        gauss = torch.distributions.MultivariateNormal(train.mean(0), torch.cov(train.T))
        return flow, gauss, test, untrained_ll
    finally:
        torch.set_num_threads(threads)


def test_held_out_log_likelihood(fitted):
    flow, gauss, test, untrained_ll = fitted
    with torch.no_grad():
        ll = flow.log_prob(test).mean().item()
    gauss_ll = gauss.log_prob(test).mean().item()
    assert untrained_ll < LL_THRESHOLD and gauss_ll < LL_THRESHOLD  # the bar is not free
    assert ll > LL_THRESHOLD, f"held-out log-likelihood {ll:.3f} <= {LL_THRESHOLD}"
    assert ll > gauss_ll + 1.0, f"flow {ll:.3f} vs Gaussian {gauss_ll:.3f}"


def test_samples_match_held_out_data(fitted):
    flow, gauss, test, _ = fitted
    torch.manual_seed(0)
    with torch.no_grad():
        samples = flow.sample(500)
        gauss_samples = gauss.sample((500,))
    held_out = test[:500]
    bandwidth = 0.5 * torch.cdist(held_out, held_out).median().item()
    mmd_flow, p_flow = mmd_permutation_test(samples, held_out, bandwidth)
    mmd_gauss, p_gauss = mmd_permutation_test(gauss_samples, held_out, bandwidth)
    assert p_gauss < 0.01, f"the test cannot tell a Gaussian from the moons (p={p_gauss})"
    assert p_flow > 0.01, f"flow samples differ from held-out data: MMD^2 {mmd_flow:.4f}"
    assert mmd_flow < 0.25 * mmd_gauss
