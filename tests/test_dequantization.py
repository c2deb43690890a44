"""Dequantization densities and the bits-per-dim bookkeeping of the input maps (logit, scale)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import jacobian

from invertible import (
    ElementwiseAffine,
    Flow,
    InvalidInputError,
    LogitTransform,
    Scale,
    Sequential,
    StandardLogistic,
    StandardNormal,
    UniformDequantization,
    VariationalDequantization,
)


def _perturb(module: torch.nn.Module, scale: float = 0.1) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))


# -- uniform ---------------------------------------------------------------------------------


def test_uniform_dequantization_range_and_log_q():
    deq = UniformDequantization(256).double()
    k = torch.randint(0, 256, (64, 1, 5, 5), dtype=torch.uint8)
    k[0, 0, 0, 0], k[0, 0, 0, 1] = 0, 255
    y, log_q = deq(k)
    assert y.shape == k.shape and y.dtype == torch.float64
    assert log_q.shape == (64,) and torch.equal(log_q, torch.zeros(64, dtype=torch.float64))
    u = y * 256 - k.double()
    assert (u >= 0).all() and (u < 1).all()
    assert (y >= 0).all() and (y < 1).all()
    assert abs(u.mean().item() - 0.5) < 0.03  # 1600 draws: 5 sigma is about 0.036
    assert torch.equal(deq.quantize(y), k.long())


def test_uniform_dequantization_follows_dtype():
    y, log_q = UniformDequantization(4)(torch.tensor([[0, 3], [1, 2]]))
    assert y.dtype == torch.get_default_dtype() and log_q.dtype == y.dtype


@pytest.mark.parametrize(
    "levels, match",
    [
        (torch.tensor([[0, 256]]), r"\[0, 255\]"),
        (torch.tensor([[-1, 3]]), r"\[0, 255\]"),
        (torch.tensor([[0.0, 0.5]]), "integer levels"),
        (torch.tensor([[True, False]]), "integer levels"),
    ],
)
def test_uniform_dequantization_rejects_bad_levels(levels, match):
    with pytest.raises(InvalidInputError, match=f"UniformDequantization.*{match}"):
        UniformDequantization(256)(levels)


def test_dequantizers_reject_bad_config():
    with pytest.raises(ValueError, match="n_bins"):
        UniformDequantization(1)
    with pytest.raises(ValueError, match="n_bins"):
        VariationalDequantization((3,), 2.5)  # type: ignore[arg-type]


def test_uniform_bound_of_the_uniform_model_is_log2_n_bins():
    # Logit + logistic base is the uniform density on (0, 1)^D: every level costs 8 bits.
    flow = Flow(LogitTransform(0.0), StandardLogistic((3, 2, 2))).double()
    deq = UniformDequantization(256).double()
    k = torch.randint(0, 256, (10, 3, 2, 2))
    torch.testing.assert_close(
        deq.bits_per_dim(flow, k), torch.full((10,), 8.0, dtype=torch.float64)
    )


# -- variational -----------------------------------------------------------------------------


def _variational(shape, n_bins, depth=2, seed=0):
    torch.manual_seed(seed)
    deq = VariationalDequantization(shape, n_bins, hidden=16, depth=depth).double()
    _perturb(deq)
    return deq


@pytest.mark.parametrize("shape", [(5,), (2, 4, 4), (2, 3)])
def test_variational_samples_lie_in_their_bins_and_log_q_is_consistent(shape):
    deq = _variational(shape, 16)
    k = torch.randint(0, 16, (8, *shape))
    y, log_q = deq(k)
    assert y.shape == k.shape and log_q.shape == (8,)
    u = y * 16 - k.double()
    assert (u > 0).all() and (u < 1).all()
    # The density reported with the sample equals the density evaluated at that sample.
    torch.testing.assert_close(deq.log_prob(u, k), log_q, rtol=1e-10, atol=1e-10)


def test_variational_log_q_matches_autograd_change_of_variables():
    deq = _variational((1, 2, 2), 8)
    k = torch.randint(0, 8, (3, 1, 2, 2))
    h = deq._features(k.double())
    eps = torch.randn(3, 1, 2, 2, dtype=torch.float64)
    v, flow_ld = deq._flow(eps, h)
    log_q = deq._log_q(eps, v, flow_ld)
    for i in range(3):
        jac = jacobian(lambda e, i=i: torch.sigmoid(deq._flow(e, h[i : i + 1])[0]), eps[i : i + 1])
        _, logdet = torch.linalg.slogdet(jac.reshape(4, 4))
        base = -0.5 * (eps[i] ** 2).sum() - 2 * math.log(2 * math.pi)
        assert abs((base - logdet).item() - log_q[i].item()) < 1e-9


@pytest.mark.parametrize("level", [0, 3, 7])
def test_variational_density_integrates_to_one_one_pixel(level):
    deq = _variational((1,), 8, seed=level)
    # Integrate q(u | k) over (0, 1) in logit space: du = sigma'(v) dv.
    v = torch.linspace(-30, 30, 30001, dtype=torch.float64)
    u = torch.sigmoid(v)[:, None]
    k = torch.full((v.numel(), 1), level)
    with torch.no_grad():
        log_q = deq.log_prob(u, k)
    density_v = torch.exp(log_q + torch.log(u[:, 0]) + torch.log1p(-u[:, 0]))
    total = torch.trapezoid(density_v, v).item()
    assert abs(total - 1.0) < 1e-6, total


def test_variational_density_integrates_to_one_two_pixels():
    # Two pixels: the couplings then mix the noise dimensions, so this checks them too.
    deq = _variational((2,), 4, seed=5)
    g = torch.linspace(-16, 16, 401, dtype=torch.float64)
    v1, v2 = torch.meshgrid(g, g, indexing="ij")
    v = torch.stack([v1.reshape(-1), v2.reshape(-1)], dim=1)
    u = torch.sigmoid(v)
    for level in ([0, 3], [2, 1]):
        k = torch.tensor(level).expand(v.shape[0], 2)
        with torch.no_grad():
            log_q = deq.log_prob(u, k)
        dens = torch.exp(log_q + (torch.log(u) + torch.log1p(-u)).sum(1)).reshape(401, 401)
        total = torch.trapezoid(torch.trapezoid(dens, g, dim=1), g).item()
        assert abs(total - 1.0) < 5e-5, total  # grid error ~5e-6 (ReLU kinks)


def test_variational_trains_through_the_bound():
    deq = VariationalDequantization((1, 2, 2), 256, hidden=8).double()
    flow = Flow(
        Sequential(LogitTransform(0.05), ElementwiseAffine((1, 2, 2))), StandardNormal((1, 2, 2))
    ).double()
    k = torch.randint(0, 256, (6, 1, 2, 2), dtype=torch.uint8)

    def bound() -> torch.Tensor:
        torch.manual_seed(11)  # the same noise eps on every call: a deterministic function
        return deq.bits_per_dim(flow, k).mean()

    bound().backward()
    # Each gradient matches a central finite difference along a random direction. At init
    # the output layers are zero, so only they (and not the hidden layers) have a gradient.
    outputs = {id(m[-1].weight) for m in [deq.affine, *deq.couplings]}
    eps = 1e-6
    for name, p in deq.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        d = torch.randn_like(p)
        with torch.no_grad():
            p.add_(eps * d)
            up = bound().item()
            p.sub_(2 * eps * d)
            down = bound().item()
            p.add_(eps * d)
        numeric = (up - down) / (2 * eps)
        analytic = (p.grad * d).sum().item()
        assert abs(analytic - numeric) <= 1e-5 * abs(numeric) + 1e-7, (name, analytic, numeric)
        if id(p) in outputs:  # the zero-initialised output layers move the bound
            assert abs(numeric) > 1e-4, (name, numeric)


def test_variational_rejects_bad_levels():
    deq = VariationalDequantization((1, 2, 2), 4)
    with pytest.raises(InvalidInputError, match="VariationalDequantization.*shape"):
        deq(torch.zeros(2, 1, 2, 3, dtype=torch.long))
    with pytest.raises(InvalidInputError, match="VariationalDequantization.*\\[0, 3\\]"):
        deq(torch.full((2, 1, 2, 2), 4))
    with pytest.raises(InvalidInputError, match="VariationalDequantization.*\\(0, 1\\)"):
        deq.log_prob(torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2, dtype=torch.long))


# -- bits per dim: the input maps' log-dets are counted ----------------------------------


def test_bits_per_dim_counts_the_logit_transform():
    alpha = 0.05
    torch.manual_seed(3)
    affine = ElementwiseAffine((1, 4, 4))
    _perturb(affine)
    flow = Flow(Sequential(LogitTransform(alpha), affine), StandardNormal((1, 4, 4))).double()
    k = torch.randint(0, 256, (5, 1, 4, 4), dtype=torch.uint8)
    y, _ = UniformDequantization(256).double()(k)

    # By hand, without the library's layers.
    d = 16
    p = alpha + (1 - 2 * alpha) * y
    z0 = torch.log(p / (1 - p))
    ld_logit = (math.log(1 - 2 * alpha) - torch.log(p) - torch.log(1 - p)).sum((1, 2, 3))
    s, t = affine.log_scale.detach().double(), affine.shift.detach().double()
    z = z0 * torch.exp(s) + t
    ld_affine = s.sum()
    log_normal = (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum((1, 2, 3))
    log_px = log_normal + ld_logit + ld_affine
    expected = -(log_px - d * math.log(256)) / (d * math.log(2))

    torch.testing.assert_close(flow.bits_per_dim(y, 256), expected, rtol=1e-12, atol=1e-12)
    # And the logit log-det matters: leaving it out changes the answer by a lot.
    without = -(log_normal + ld_affine - d * math.log(256)) / (d * math.log(2))
    assert (without - expected).abs().min() > 0.1


def test_scale_centres_data_with_the_right_log_det():
    x = torch.rand(4, 3, 2, 2, dtype=torch.float64)
    z, ld = Scale(1.0, -0.5)(x)
    assert (z >= -0.5).all() and (z <= 0.5).all()
    torch.testing.assert_close(ld, torch.zeros(4, dtype=torch.float64))
    _, ld2 = Scale(-3.0)(x)
    torch.testing.assert_close(ld2, torch.full((4,), 12 * math.log(3.0), dtype=torch.float64))
    with pytest.raises(ValueError, match="Scale"):
        Scale(0.0)


def test_logit_transform_rejects_data_outside_unit_interval():
    with pytest.raises(InvalidInputError, match=r"LogitTransform.*\[0, 1\]"):
        LogitTransform()(torch.tensor([[0.5, 255.0]]))
    with pytest.raises(InvalidInputError, match=r"LogitTransform.*\(0, 1\)"):
        LogitTransform(0.0)(torch.tensor([[0.0, 0.5]]))
    with pytest.raises(ValueError, match="LogitTransform"):
        LogitTransform(0.5)
    # The inverse lands in [0, 1] for latents the data can produce.
    z, _ = LogitTransform(0.05)(torch.tensor([[0.0, 1.0, 0.3]], dtype=torch.float64))
    x, _ = LogitTransform(0.05).inverse(z)
    torch.testing.assert_close(x, torch.tensor([[0.0, 1.0, 0.3]], dtype=torch.float64))
