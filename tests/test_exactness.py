"""The generic exactness test: every registered bijection through the same checks."""

from __future__ import annotations

import io

import pytest
import torch
from torch.autograd.functional import jacobian

import invertible
from invertible import Bijection, InvalidInputError

from registry import Case, all_cases

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread

CASES = all_cases()
IDS = [c.name for c in CASES]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def _exported_bijections() -> set[type]:
    out = set()
    for name in invertible.__all__:
        obj = getattr(invertible, name)
        if isinstance(obj, type) and issubclass(obj, Bijection) and obj is not Bijection:
            out.add(obj)
    return out


def test_registry_covers_every_exported_bijection():
    covered: set[type] = set()
    for case in CASES:
        covered.update(type(m) for m in case.make().modules())
    missing = sorted(t.__name__ for t in _exported_bijections() - covered)
    assert not missing, f"exported bijections with no registry case: {missing}"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_round_trip_float64(case: Case):
    f = case.build()
    x = case.inputs()
    with torch.no_grad():
        z, ld = f(x)
        x2, ld_inv = f.inverse(z)
        z2, _ = f(x2)
    assert z.dtype == torch.float64 and ld.dtype == torch.float64
    assert ld.shape == (x.shape[0],), f"logabsdet shape {tuple(ld.shape)}, want ({x.shape[0]},)"
    assert x2.shape == x.shape
    assert _rel(x2, x) <= 1e-10, f"inverse(forward(x)) relative error {_rel(x2, x):.3e}"
    assert _rel(z2, z) <= 1e-10
    # The inverse's own log-det is minus the forward one at the matching point.
    torch.testing.assert_close(ld_inv, -ld, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", [c for c in CASES if c.jacobian], ids=lambda c: c.name)
def test_logabsdet_matches_autograd_jacobian(case: Case):
    f = case.build()
    x = case.inputs()
    b, d = x.shape[0], x[0].numel()
    _, ld = f(x)
    jac = jacobian(lambda t: f(t)[0], x).reshape(b, d, b, d)
    for i in range(b):
        sign, logdet = torch.linalg.slogdet(jac[i, :, i, :])
        assert sign != 0, "Jacobian is singular"
        assert abs(logdet.item() - ld[i].item()) <= 1e-8 * max(1.0, abs(logdet.item())), (
            f"sample {i}: logabsdet {ld[i].item():.12f}, autograd {logdet.item():.12f}"
        )
        # Batch independence: output i does not depend on input j != i.
        for j in range(b):
            if j != i:
                assert jac[i, :, j, :].abs().max().item() == 0.0, f"output {i} depends on {j}"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_batch_independence(case: Case):
    f = case.build()
    x = case.inputs(batch=4)
    with torch.no_grad():
        z, ld = f(x)
        for i in range(x.shape[0]):
            zi, ldi = f(x[i : i + 1])
            torch.testing.assert_close(zi[0], z[i], rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(ldi[0], ld[i], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradients_reach_every_parameter(case: Case):
    """Autograd's gradient of every parameter matches a central finite difference (float64).

    The loss is ``<z, w> + sum(logabsdet)`` for a random ``w``; each parameter tensor is
    moved along its own random direction ``d`` by +-1e-6 and ``(L+ - L-) / 2e-6`` is
    compared with ``<grad, d>``. Measured over the registry: relative error <= 1e-6, absolute
    <= 1e-8, and every directional derivative >= 5e-4 in size; the tolerances leave room.
    """
    f = case.build().train()
    x = case.inputs().requires_grad_(True)
    z, ld = f(x)
    weights = torch.randn_like(z)

    def loss() -> float:
        z, ld = f(x.detach())  # with autograd on, as in training (no cached factorisations)
        return ((z * weights).sum() + ld.sum()).item()

    ((z * weights).sum() + ld.sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all(), "input gradient is broken"
    eps = 1e-6
    for name, p in f.named_parameters():
        assert p.grad is not None, f"parameter {name} received no gradient"
        assert torch.isfinite(p.grad).all(), f"parameter {name} has non-finite gradient"
        d = torch.randn_like(p)
        with torch.no_grad():
            p.add_(eps * d)
        up = loss()
        with torch.no_grad():
            p.sub_(2 * eps * d)
        down = loss()
        with torch.no_grad():
            p.add_(eps * d)
        numeric = (up - down) / (2 * eps)
        analytic = (p.grad * d).sum().item()
        assert abs(numeric) > 1e-6, f"parameter {name} does not affect the output"
        assert abs(analytic - numeric) <= 1e-5 * abs(numeric) + 1e-7, (
            f"parameter {name}: autograd {analytic:.10g}, finite difference {numeric:.10g}"
        )


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_state_dict_round_trip(case: Case):
    f = case.build(seed=1)
    buf = io.BytesIO()
    torch.save(f.state_dict(), buf)
    buf.seek(0)
    torch.manual_seed(2)
    g = case.make().to(torch.float64)
    g.load_state_dict(torch.load(buf, weights_only=True))
    g.eval()
    x = case.inputs()
    with torch.no_grad():
        zf, ldf = f(x)
        zg, ldg = g(x)
        xf, _ = f.inverse(zf)
        xg, _ = g.inverse(zf)
    torch.testing.assert_close(zg, zf, rtol=0, atol=0)
    torch.testing.assert_close(ldg, ldf, rtol=0, atol=0)
    torch.testing.assert_close(xg, xf, rtol=0, atol=0)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_rejects_bad_input(case: Case):
    f = case.build()
    x = case.inputs()
    # The message names the layer that refused (for containers, one of their parts).
    names = "|".join(sorted({type(m).__name__ for m in f.modules()}))
    with pytest.raises(InvalidInputError, match=names):
        f(x.to(torch.int64))
    for shape in case.bad_shapes:
        bad = torch.randn(2, *shape, dtype=torch.float64)
        with pytest.raises(InvalidInputError, match=names):
            f(bad)
        with pytest.raises(InvalidInputError, match=names):
            f.inverse(bad)
