"""CircularConv2d against dense linear algebra, its two linalg paths, cache and conditioning."""

from __future__ import annotations

import copy
import io
import subprocess
import sys
import warnings

import pytest
import torch

from invertible import (
    CircularConv2d,
    ConditioningWarning,
    IllConditionedError,
    InvalidInputError,
    build_model,
)
from invertible.layers._fourier import (
    frequency_major,
    half_spectrum_unique,
    kernel_spectrum,
    spatial_from_rows,
)


def _layer(c, k, seed=0, scale=0.3, **kw) -> CircularConv2d:
    torch.manual_seed(seed)
    m = CircularConv2d(c, k, **kw).double()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(scale * torch.randn_like(p))
    return m


def _dense(m: CircularConv2d, h: int, w: int) -> torch.Tensor:
    """The explicit (C h w) x (C h w) matrix of the convolution without bias."""
    c = m.channels
    eye = torch.eye(c * h * w, dtype=m.weight.dtype).reshape(-1, c, h, w)
    with torch.no_grad():
        cols, _ = m(eye)
    if m.bias is not None:
        cols = cols - m.bias.view(1, -1, 1, 1)
    return cols.reshape(c * h * w, c * h * w).T


SIZES = [(2, 3, 4, 6), (3, 1, 3, 3), (2, 5, 5, 7), (1, 3, 6, 5), (4, 3, 3, 4)]


@pytest.mark.parametrize("c,k,h,w", SIZES)
@pytest.mark.parametrize(
    "linalg,solver",
    [("complex", "lu"), ("real", "lu"), ("complex", "inverse"), ("real", "inverse")],
)
def test_logdet_and_inverse_match_dense(c, k, h, w, linalg, solver):
    m = _layer(c, k, linalg=linalg, solver=solver)
    dense = _dense(m, h, w)
    x = torch.randn(3, c, h, w, dtype=torch.float64)
    with torch.no_grad():
        z, ld = m(x)
        x_inv, ld_inv = m.inverse(z)
    assert torch.allclose(ld, torch.linalg.slogdet(dense).logabsdet.expand(3), atol=1e-9)
    assert torch.allclose(ld_inv, -ld, atol=1e-12)
    rhs = (z - m.bias.view(1, -1, 1, 1)).reshape(3, -1).T
    x_dense = torch.linalg.solve(dense, rhs).T.reshape(x.shape)
    torch.testing.assert_close(x_inv, x_dense, rtol=1e-10, atol=1e-11)
    torch.testing.assert_close(x_inv, x, rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("c,k,h,w", SIZES)
def test_singular_values_and_condition_number_match_dense(c, k, h, w):
    m = _layer(c, k)
    dense = _dense(m, h, w)
    s_dense = torch.linalg.svdvals(dense)
    s = m.singular_values(h, w)
    assert s.shape == (h, w, c)
    torch.testing.assert_close(s.flatten().sort().values, s_dense.sort().values)
    cond = m.condition_number(h, w)
    assert cond == pytest.approx((s_dense.max() / s_dense.min()).item(), rel=1e-9)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-4)])
def test_complex_and_real_lifting_paths_agree(dtype, tol):
    a = _layer(5, 3, seed=3).to(dtype)
    b = _layer(5, 3, seed=3, linalg="real").to(dtype)
    x = torch.randn(4, 5, 7, 6, dtype=dtype)
    with torch.no_grad():
        za, lda = a(x)
        zb, ldb = b(x)
        xa, _ = a.inverse(za)
        xb, _ = b.inverse(za)
    torch.testing.assert_close(zb, za, rtol=0, atol=0)
    torch.testing.assert_close(ldb, lda, rtol=tol, atol=tol * abs(lda[0].item()))
    torch.testing.assert_close(xb, xa, rtol=tol, atol=tol)
    # With gradients on, both paths differentiate to the same weight gradient.
    grads = []
    for m in (a, b):
        m.zero_grad()
        m.logabsdet(7, 6).backward()
        grads.append(m.weight.grad.clone())
    torch.testing.assert_close(grads[1], grads[0], rtol=tol * 10, atol=tol * 10)


@pytest.mark.parametrize("k", [1, 3, 5, 7])
def test_spatial_and_fft_forward_agree(k):
    a = _layer(3, k, method="spatial")
    b = _layer(3, k, method="fft")
    x = torch.randn(2, 3, 7, 8, dtype=torch.float64)
    torch.testing.assert_close(b(x)[0], a(x)[0], rtol=1e-12, atol=1e-12)


def test_logdet_gradient_is_exact():
    m = _layer(2, 3)
    w = m.weight.detach().clone().requires_grad_(True)

    m.zero_grad()
    m.logabsdet(4, 5).backward()
    dense_logdet = torch.linalg.slogdet(_dense_from_weight(w, 4, 5)).logabsdet
    (expected,) = torch.autograd.grad(dense_logdet, w)
    torch.testing.assert_close(m.weight.grad, expected, rtol=1e-9, atol=1e-10)


def _dense_from_weight(weight: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Differentiable dense matrix of a circular conv with ``weight`` (reference only)."""
    c, k = weight.shape[0], weight.shape[-1]
    p = k // 2
    eye = torch.eye(c * h * w, dtype=weight.dtype).reshape(-1, c, h, w)
    padded = torch.nn.functional.pad(eye, (p, p, p, p), mode="circular")
    cols = torch.nn.functional.conv2d(padded, weight)
    return cols.reshape(c * h * w, c * h * w).T


def test_float32_round_trip_within_condition_bound():
    m = CircularConv2d(16, 3)
    x = torch.randn(8, 16, 12, 10)
    with torch.no_grad():
        z, _ = m(x)
        x2, _ = m.inverse(z)
    err = ((x2 - x).norm() / x.norm()).item()
    bound = 10 * m.condition_number() * torch.finfo(torch.float32).eps
    assert err <= bound, f"relative error {err:.2e} above 10 cond eps = {bound:.2e}"


def test_factors_are_reused_across_batches_and_invalidated_by_optimizer_step():
    m = _layer(3, 3).float()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    x = torch.randn(4, 3, 5, 6)
    with torch.no_grad():
        z, _ = m(x)
        m.inverse(z)
        lu_before = m._factors(5, 6)[0]
        m.inverse(torch.randn(2, 3, 5, 6))
        assert m._factors(5, 6)[0] is lu_before, "factors recomputed for the same weights"
        ld_before = m(x)[1][0].item()
    # A training step with gradients: the log-det carries gradient to the weight.
    z, ld = m(x)
    loss = -(ld.mean() - 0.5 * (z**2).sum() / x.shape[0])
    loss.backward()
    assert m.weight.grad.abs().sum() > 0
    opt.step()
    with torch.no_grad():
        z_new, ld_new = m(x)
        x_new, _ = m.inverse(z_new)
        assert m._factors(5, 6)[0] is not lu_before
    assert ld_new[0].item() != ld_before
    fresh = torch.linalg.slogdet(_dense(copy.deepcopy(m).double(), 5, 6)).logabsdet.item()
    assert ld_new[0].item() == pytest.approx(fresh, rel=1e-5, abs=1e-4)
    torch.testing.assert_close(x_new, x, rtol=1e-4, atol=1e-4)


def test_cache_invalidated_by_load_state_dict_and_to():
    a, b = _layer(2, 3, seed=1), _layer(2, 3, seed=2)
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        za, _lda = a(x)
        a.inverse(za)
        buf = io.BytesIO()
        torch.save(b.state_dict(), buf)
        buf.seek(0)
        a.load_state_dict(torch.load(buf, weights_only=True))
        zb, ldb = b(x)
        torch.testing.assert_close(a(x)[1], ldb, rtol=0, atol=0)
        torch.testing.assert_close(a.inverse(zb)[0], b.inverse(zb)[0], rtol=0, atol=0)
        a32 = a.float()
        x32, _ = a32.inverse(zb.float())
        assert x32.dtype == torch.float32
        torch.testing.assert_close(x32, x.float(), rtol=1e-4, atol=1e-4)
        assert a32(x.float())[1].dtype == torch.float32


def test_in_place_weight_edit_invalidates_cache():
    m = _layer(2, 3)
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        ld0 = m(x)[1]
        m.weight.mul_(2.0)  # every block doubles: log|det| grows by C h w log 2
        ld1 = m(x)[1]
    torch.testing.assert_close(
        ld1 - ld0,
        torch.full_like(ld0, 2 * 25 * torch.log(torch.tensor(2.0, dtype=torch.float64)).item()),
    )


def _fresh_copy(m: CircularConv2d) -> CircularConv2d:
    """A new layer with ``m``'s configuration and current values and an empty cache."""
    fresh = CircularConv2d(m.channels, m.kernel_size, linalg=m.linalg, solver=m.solver).double()
    fresh.load_state_dict(m.state_dict())
    return fresh


def _data_mul(m: CircularConv2d) -> None:
    m.weight.data.mul_(1.5)


def _data_copy(m: CircularConv2d) -> None:
    m.weight.data.copy_(_layer(m.channels, m.kernel_size, seed=11).weight)


def _data_item(m: CircularConv2d) -> None:
    m.weight.data[0, 0, 1, 1] += 0.5


def _no_grad_mul(m: CircularConv2d) -> None:
    with torch.no_grad():
        m.weight.mul_(1.5)


def _load_state_dict(m: CircularConv2d) -> None:
    m.load_state_dict(_layer(m.channels, m.kernel_size, seed=12).state_dict())


@pytest.mark.parametrize(
    "write", [_data_mul, _data_copy, _data_item, _no_grad_mul, _load_state_dict]
)
@pytest.mark.parametrize("solver,linalg", [("inverse", "complex"), ("lu", "real")])
def test_every_weight_write_invalidates_cache(write, solver, linalg):
    # ``weight.data`` writes bump the ``.data`` alias's version counter, not the weight's, so
    # a cache keyed on ``_version`` alone kept inverting with stale factors.
    m = _layer(3, 3, solver=solver, linalg=linalg)
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    with torch.no_grad():
        m.inverse(m(x)[0])  # fill the cache: factors, inverses, log-det, condition number
        cond_before = m.condition_number(5, 6)
        write(m)
        z, ld = m(x)
        x_inv, ld_inv = m.inverse(z)
        ref = _fresh_copy(m)
        z_ref, ld_ref = ref(x)
        x_ref, _ = ref.inverse(z_ref)
    torch.testing.assert_close(z, z_ref, rtol=0, atol=0)
    torch.testing.assert_close(ld, ld_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ld_inv, -ld_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x_inv, x_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x_inv, x, rtol=1e-10, atol=1e-11)
    assert m.condition_number(5, 6) == pytest.approx(ref.condition_number(5, 6), rel=1e-12)
    assert m.condition_number(5, 6) != cond_before


def test_unchanged_weight_keeps_cache_after_value_check():
    m = _layer(2, 3)
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        m.inverse(m(x)[0])
        lu = m._factors(4, 4)[0]
        m.weight.data.copy_(m.weight.detach().clone())  # a write that changes no value
        m.inverse(m(x)[0])
    assert m._factors(4, 4)[0] is lu


# -- mixed precision ----------------------------------------------------------------------------
def _bf16_autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


@pytest.mark.parametrize(
    "method,linalg", [("spatial", "complex"), ("fft", "complex"), ("fft", "real")]
)
@pytest.mark.parametrize("in_dtype", [torch.float32, torch.bfloat16])
def test_bf16_autocast_runs_in_float32(method, linalg, in_dtype):
    m = _layer(3, 3, method=method, linalg=linalg).float()
    x = torch.randn(2, 3, 6, 5).to(in_dtype)
    # Reference: the same layer on the same values, in plain float32.
    z_ref, ld_ref = m(x.float())
    (z_ref.square().sum() - ld_ref.sum()).backward()
    grad_ref = m.weight.grad.clone()
    m.zero_grad()
    with _bf16_autocast():
        z, ld = m(x)
        loss = z.square().sum() - ld.sum()
        x_inv, ld_inv = m.inverse(z)
    loss.backward()
    assert z.dtype == ld.dtype == x_inv.dtype == ld_inv.dtype == torch.float32
    # The whole layer opts out of autocast, so it matches float32 to rounding.
    torch.testing.assert_close(z, z_ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ld, ld_ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(m.weight.grad, grad_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x_inv, x.float(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ld_inv, -ld, rtol=0, atol=0)
    # The cached (no-grad) inverse too, from a bf16 latent.
    with torch.no_grad():
        with _bf16_autocast():
            x_bf, _ = m.inverse(z.bfloat16())
        x_bf_ref, _ = m.inverse(z.bfloat16().float())
    assert x_bf.dtype == torch.float32
    torch.testing.assert_close(x_bf, x_bf_ref, rtol=0, atol=0)


def test_half_input_outside_autocast_is_upcast_and_other_mismatches_raise():
    m = CircularConv2d(2, 3)
    x = torch.randn(1, 2, 5, 5)
    z, ld = m(x.bfloat16())
    assert z.dtype == ld.dtype == torch.float32
    torch.testing.assert_close(z, m(x.bfloat16().float())[0], rtol=0, atol=0)
    with pytest.raises(InvalidInputError, match="float64"):
        m(x.double())  # a genuine mismatch: never silently downcast
    with pytest.raises(InvalidInputError, match="float32"), _bf16_autocast():
        m.double()(x)
    with pytest.raises(InvalidInputError, match="autocast"):
        CircularConv2d(2, 3).bfloat16()(x.bfloat16())


@pytest.mark.parametrize(
    "kwargs",
    [
        # conv -> SneakyReLU -> conv: the spatial conv used to return bf16, which the next
        # conv rejected.
        {"actnorm": False},
        {"hybrid": True, "coupling_hidden": 8},  # the coupling nets do run in bf16
        {"kernel_size": 7, "levels": 1, "stem": False, "actnorm": False},  # the FFT path
    ],
    ids=["pure", "hybrid", "fft"],
)
def test_iconvnet_trains_under_bf16_autocast(kwargs):
    torch.manual_seed(0)
    flow = build_model("iconvnet", (1, 8, 8), depth=2, **kwargs)
    x = 0.02 + 0.96 * torch.rand(16, 1, 8, 8)
    with torch.no_grad():
        flow.log_prob(x)  # ActNorm's data-dependent init, once, in float32
    ref = -flow.log_prob(x).mean()
    ref.backward()
    grads_ref = [p.grad.clone() for p in flow.parameters()]
    flow.zero_grad()
    with _bf16_autocast():
        loss = -flow.log_prob(x).mean()
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    # bf16 keeps ~3 significant digits; the log-likelihood is a sum of O(100) terms.
    assert loss.item() == pytest.approx(ref.item(), rel=2e-2, abs=0.5)
    for p, g_ref in zip(flow.parameters(), grads_ref, strict=True):
        assert torch.isfinite(p.grad).all()
        err = (p.grad - g_ref).norm() / g_ref.norm().clamp_min(1e-6)
        assert err < 5e-2, f"gradient of a {tuple(p.shape)} parameter off by {err:.1e}"
    with torch.no_grad(), _bf16_autocast():
        z, _ = flow.bijection(x)
        x_back, _ = flow.bijection.inverse(z)
    assert z.dtype == x_back.dtype == torch.float32
    torch.testing.assert_close(x_back, x, rtol=1e-2, atol=1e-2)


def _near_singular(c=4, strict=False, tolerance=1e-3) -> CircularConv2d:
    m = CircularConv2d(c, 3, init="identity", init_noise=0.0, strict=strict, tolerance=tolerance)
    with torch.no_grad():
        m.weight[0, 0, 1, 1] = 1e-6  # one channel almost annihilated at every frequency
    return m


def test_conditioning_guard_warns_on_near_singular_kernel():
    m = _near_singular()
    z = torch.randn(2, 4, 6, 6)
    with pytest.warns(ConditioningWarning, match="condition number"):
        m.inverse(z)
    assert m.condition_number(6, 6) == pytest.approx(1e6, rel=1e-3)
    with warnings.catch_warnings():  # warned once per weight value, not per call
        warnings.simplefilter("error")
        m.inverse(z)


def test_conditioning_guard_raises_when_strict():
    m = _near_singular(strict=True)
    with pytest.raises(IllConditionedError, match="strict"):
        m.inverse(torch.randn(2, 4, 6, 6))
    # The same kernel in float64 is well within tolerance.
    ok = _near_singular(strict=True).double()
    x, _ = ok.inverse(torch.randn(2, 4, 6, 6, dtype=torch.float64))
    assert torch.isfinite(x).all()


def test_guard_quiet_on_well_conditioned_kernel():
    m = CircularConv2d(8, 3, strict=True)
    assert m.condition_number(8, 8) < 2.0  # orthogonal init plus small noise
    m.inverse(torch.randn(2, 8, 8, 8))


def test_singular_value_clipping_improves_conditioning():
    m = _layer(4, 3, seed=5, scale=0.6).float()
    before = m.condition_number(8, 8)
    lo, hi = 0.5, 2.0
    for _ in range(5):
        m.clip_singular_values_(8, 8, bounds=(lo, hi))
    after = m.condition_number(8, 8)
    # Truncating to the k x k support after each clip makes this an alternating
    # projection: it contracts towards the bounds rather than landing on them at once.
    assert after < before / 10, f"condition {before:.1f} -> {after:.1f}"
    assert m.singular_values(8, 8).max().item() < 1.2 * hi


def test_singular_value_clipping_leaves_a_kernel_within_bounds_alone():
    m = _layer(4, 3, seed=5, scale=0.6).float()
    s = m.singular_values(8, 8)
    before = m.weight.detach().clone()
    assert m.clip_singular_values_(8, 8, bounds=(0.9 * s.min().item(), 1.1 * s.max().item())) is False
    assert torch.equal(m.weight.detach(), before)
    # Only the smallest value is out of bounds (the check sees every frequency's blocks).
    assert m.clip_singular_values_(8, 8, bounds=(1.01 * s.min().item(), 1.1 * s.max().item()))
    assert not torch.equal(m.weight.detach(), before)


def test_conditioning_penalty_is_a_barrier():
    m = _layer(3, 3, seed=7, scale=0.6)
    s = m.singular_values(6, 6)
    lo, hi = s.min().item(), s.max().item()
    assert m.conditioning_penalty(6, 6, bounds=(lo * 0.9, hi * 1.1)).item() == 0.0
    penalty = m.conditioning_penalty(6, 6, bounds=(lo * 4, hi))
    assert penalty.item() > 0
    penalty.backward()
    opt = torch.optim.SGD(m.parameters(), lr=0.05)
    opt.step()
    assert m.singular_values(6, 6).min().item() > lo


def test_invalid_configurations():
    with pytest.raises(ValueError, match="odd"):
        CircularConv2d(2, 4)
    with pytest.raises(ValueError, match="linalg"):
        CircularConv2d(2, 3, linalg="quaternion")
    m = CircularConv2d(2, 5)
    with pytest.raises(InvalidInputError, match="kernel_size 5"):
        m(torch.randn(1, 2, 4, 8))
    with pytest.raises(InvalidInputError, match="kernel_size 5"):
        m.inverse(torch.randn(1, 2, 8, 3))
    with pytest.raises(InvalidInputError, match="float64"):
        m(torch.randn(1, 2, 8, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="image size"):
        CircularConv2d(2, 3).condition_number()


def test_inverse_differentiable_in_training():
    m = _layer(2, 3)
    z = torch.randn(2, 2, 4, 5, dtype=torch.float64)
    x, ld = m.inverse(z)
    (x.sum() + ld.sum()).backward()
    assert m.weight.grad is not None and m.weight.grad.abs().sum() > 0


# -- the frequency-major layout, the row systems and the conjugate-pair log-det -------------
def _full_spectrum_inverse(m: CircularConv2d, z: torch.Tensor) -> torch.Tensor:
    """An independent inverse: the full complex FFT, one column solve per frequency."""
    h, w = z.shape[-2:]
    blocks = kernel_spectrum(m.weight.detach(), h, w, full=True)  # (h, w, C, C)
    spec = torch.fft.fft2(z - m.bias.detach().view(1, -1, 1, 1)).permute(2, 3, 1, 0)
    sol = torch.linalg.solve(blocks, spec)  # (h, w, C, B)
    return torch.fft.ifft2(sol.permute(3, 2, 0, 1)).real


def _full_spectrum_logdet(m: CircularConv2d, h: int, w: int) -> torch.Tensor:
    blocks = kernel_spectrum(m.weight.detach(), h, w, full=True)
    return torch.linalg.slogdet(blocks).logabsdet.sum()


# The last two are large enough (B C x h wr >= 60 x 60) for PyTorch's tiled 2-D transpose.
LAYOUT_SIZES = [(3, 2, 5, 6, 5), (2, 3, 3, 4, 3), (4, 16, 16, 16, 3), (5, 8, 12, 9, 5)]


@pytest.mark.parametrize("b,c,h,w,k", LAYOUT_SIZES)
@pytest.mark.parametrize(
    "linalg,solver",
    [("complex", "lu"), ("real", "lu"), ("complex", "inverse"), ("real", "inverse")],
)
def test_row_layout_inverse_matches_full_spectrum_solve_in_float64(b, c, h, w, k, linalg, solver):
    m = _layer(c, k, linalg=linalg, solver=solver)
    z = torch.randn(b, c, h, w, dtype=torch.float64)
    expected = _full_spectrum_inverse(m, z)
    with torch.no_grad():
        cached, _ = m.inverse(z)
    graph, _ = m.inverse(z)  # weights require grad: the differentiable solve
    assert cached.is_contiguous()
    torch.testing.assert_close(cached, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(graph, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("b,c,h,w,k", LAYOUT_SIZES)
@pytest.mark.parametrize("linalg", ["complex", "real"])
def test_conjugate_pair_logdet_matches_full_spectrum_in_float64(b, c, h, w, k, linalg):
    m = _layer(c, k, linalg=linalg)
    expected = _full_spectrum_logdet(m, h, w)
    graph = m.logabsdet(h, w)  # differentiable: unique blocks of the half spectrum
    with torch.no_grad():
        m.clear_cache()
        logdet_only = m.logabsdet(h, w)  # no LU of the whole half spectrum yet
        m.clear_cache()
        m.inverse(torch.randn(b, c, h, w, dtype=torch.float64))
        after_inverse = m.logabsdet(h, w)  # from the inverse's LU of every block
    for value in (graph, logdet_only, after_inverse):
        torch.testing.assert_close(value.detach(), expected, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("h,w", [(1, 1), (2, 2), (3, 4), (4, 3), (8, 8), (7, 9), (32, 32)])
def test_half_spectrum_unique_counts_every_full_spectrum_block_once(h, w):
    index, weight = half_spectrum_unique(h, w, torch.device("cpu"))
    assert weight.sum().item() == h * w
    assert index.unique().numel() == index.numel() <= h * (w // 2 + 1)
    # Self-conjugate columns keep rows 0 .. h // 2 only; every other column is whole.
    self_conj = 1 + (w % 2 == 0 and w > 1)
    assert index.numel() == self_conj * (h // 2 + 1) + (w // 2 + 1 - self_conj) * h


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("b,c,h,wr", [(2, 3, 4, 3), (4, 16, 16, 9), (1, 1, 5, 3)])
def test_frequency_major_is_the_permutation_with_one_or_more_threads(b, c, h, wr, threads):
    spec = torch.randn(b, c, h, wr, dtype=torch.complex128)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)  # one thread: the tiled 2-D transpose; more: strided copy
    try:
        rows = frequency_major(spec)
    finally:
        torch.set_num_threads(before)
    assert rows.is_contiguous()
    assert torch.equal(rows, spec.permute(2, 3, 0, 1))


def test_fft_forward_matches_the_spatial_convolution_in_float64():
    torch.manual_seed(3)
    spatial = _layer(8, 7, method="spatial")
    fft = copy.deepcopy(spatial)
    fft.method = "fft"
    x = torch.randn(6, 8, 12, 10, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(fft(x)[0], spatial(x)[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fft(x)[0], spatial(x)[0], rtol=1e-12, atol=1e-12)


def test_uncached_logdets_of_interleaved_layers_share_scratch_correctly():
    # The no-grad log-det factorises in one reused per-thread buffer: layers of different
    # sizes, dtypes and kernel sizes (k = 9 takes the FFT route to the spectrum) must not
    # see each other's leftovers.
    layers = [(_layer(4, 3), 6, 5), (_layer(16, 3), 16, 16), (_layer(3, 9), 10, 12)]
    layers.append((_layer(8, 5).float(), 12, 9))
    expected = [_full_spectrum_logdet(m, h, w).item() for m, h, w in layers]
    with torch.no_grad():
        for _ in range(2):
            for (m, h, w), want in zip(layers + layers[::-1], expected + expected[::-1]):
                m.clear_cache()
                got = m.logabsdet(h, w).item()
                tol = 1e-10 if m.weight.dtype == torch.float64 else 1e-3
                assert abs(got - want) <= tol * max(1.0, abs(want)), (m, got, want)


def test_first_use_under_inference_mode_leaves_training_working():
    # Frequency tables are cached on first use; built under inference mode they would be
    # inference tensors that autograd cannot save for the backward.
    torch.manual_seed(0)
    m = CircularConv2d(3, 3, init_noise=0.3).double()
    x = torch.randn(2, 3, 11, 13, dtype=torch.float64)  # a size no other test uses
    with torch.inference_mode():
        m(x)
    _, logdet = m(x)
    logdet.sum().backward()
    assert m.weight.grad is not None and torch.isfinite(m.weight.grad).all()


@pytest.mark.parametrize("b,c,h,w", [(2, 3, 5, 6), (4, 16, 16, 16), (1, 2, 7, 9), (3, 1, 1, 1)])
def test_two_pass_inverse_transform_is_irfft2_in_float64(b, c, h, w):
    # Random rows, not a real image's spectrum: the self-conjugate columns' imaginary
    # parts must be dropped as irfft2 drops them, and the gradient must agree too.
    torch.manual_seed(0)
    rows = torch.randn(h, w // 2 + 1, b, c, dtype=torch.complex128, requires_grad=True)
    got = spatial_from_rows(rows, h, w)
    want = torch.fft.irfft2(rows.permute(2, 3, 0, 1), s=(h, w))
    assert got.is_contiguous() and got.shape == (b, c, h, w)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-13)
    g = torch.randn_like(want)
    (ga,) = torch.autograd.grad(got, rows, g)
    (gb,) = torch.autograd.grad(want, rows, g)
    torch.testing.assert_close(ga, gb, rtol=1e-12, atol=1e-13)


_WIDE_LAYER_SCRIPT = """
import torch
from invertible import CircularConv2d
torch.set_num_threads(2)
torch.manual_seed(0)
for linalg, c in (("complex", 160), ("real", 80)):  # LAPACK order 160 for both
    m = CircularConv2d(c, 3, linalg=linalg, init_noise=0.3).double()
    x = torch.randn(2, c, 3, 4, dtype=torch.float64)
    n = c * 12
    eye = torch.eye(n, dtype=torch.float64).reshape(n, c, 3, 4)
    with torch.no_grad():
        dense = (m(eye)[0] - m.bias.view(1, -1, 1, 1)).reshape(n, n)
        want = torch.linalg.slogdet(dense).logabsdet
        z, ld = m(x)
        back, _ = m.inverse(z)
    assert abs(ld[0].item() - want.item()) < 1e-8, (linalg, ld[0].item(), want.item())
    assert (back - x).abs().max().item() < 1e-9
    graph_ld = m.logabsdet(3, 4)  # slogdet with autograd
    graph_back, _ = m.inverse(z)  # differentiable solve
    assert abs(graph_ld.item() - want.item()) < 1e-8
    assert (graph_back - x).abs().max().item() < 1e-9
    (graph_ld + graph_back.sum()).backward()
    assert torch.isfinite(m.weight.grad).all()
print("ok")
"""


def test_wide_layers_with_two_threads_finish_and_agree_with_dense():
    # Batched CPU LUs of matrices above 128 x 128 hung with more than one thread (oneMKL
    # CLASWP errors); such batches are factorised one matrix at a time.
    proc = subprocess.run(
        [sys.executable, "-c", _WIDE_LAYER_SCRIPT],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
