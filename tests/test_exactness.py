"""The generic exactness test: every registered bijection through the same checks.

Conditional cases (``Case.context_shape``) get a different context per row in every check,
passed with ``apply_layer``, and two checks of their own: the context changes the map, and
a missing or malformed context is refused.
"""

from __future__ import annotations

import io
import re

import pytest
import torch
from torch.autograd.functional import jacobian

import invertible
from invertible import Bijection, InvalidInputError, apply_layer

from registry import Case, all_cases, assert_gradients_match

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread

CASES = all_cases()
IDS = [c.name for c in CASES]
CONDITIONAL = [c for c in CASES if c.conditional]


def fwd(f: Bijection, x: torch.Tensor, c: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    return apply_layer(f, x, c)


def inv(f: Bijection, z: torch.Tensor, c: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    return apply_layer(f, z, c, inverse=True)


def _rows(c: torch.Tensor | None, i: int) -> torch.Tensor | None:
    return None if c is None else c[i : i + 1]


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


def test_registry_context_flags_match_the_modules():
    """A case is conditional exactly when its module takes a context (else the generic
    checks would not pass one, or would pass one that is never read)."""
    wrong = [c.name for c in CASES if c.make().takes_context != c.conditional]
    assert not wrong, f"cases whose context_shape disagrees with takes_context: {wrong}"
    assert CONDITIONAL, "the registry has no conditional case"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_round_trip_float64(case: Case):
    f = case.build()
    x, c = case.inputs(), case.contexts()
    with torch.no_grad():
        z, ld = fwd(f, x, c)
        x2, ld_inv = inv(f, z, c)
        z2, _ = fwd(f, x2, c)
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
    x, c = case.inputs(), case.contexts()
    b, d = x.shape[0], x[0].numel()
    _, ld = fwd(f, x, c)
    jac = jacobian(lambda t: fwd(f, t, c)[0], x).reshape(b, d, b, d)
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
def test_transform_is_the_forward_output(case: Case):
    """``transform`` (the map without the log-det) gives forward's output, bit for bit,
    with and without a graph, and the same input gradient."""
    f = case.build()
    x, c = case.inputs(), case.contexts()
    with torch.no_grad():
        assert torch.equal(f.transform(x, c), fwd(f, x, c)[0])
    x = x.requires_grad_(True)
    z, out = fwd(f, x, c)[0], f.transform(x, c)
    assert torch.equal(out, z)
    g = torch.randn_like(z)
    (gz,) = torch.autograd.grad(z, x, g)
    (gt,) = torch.autograd.grad(out, x, g)
    torch.testing.assert_close(gt, gz, rtol=1e-12, atol=1e-12)
    if c is None:
        with pytest.raises(InvalidInputError, match="takes no context"):
            f.transform(x, torch.zeros(x.shape[0], 2, dtype=x.dtype))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_batch_independence(case: Case):
    f = case.build()
    x, c = case.inputs(batch=4), case.contexts(batch=4)
    with torch.no_grad():
        z, ld = fwd(f, x, c)
        for i in range(x.shape[0]):
            zi, ldi = fwd(f, x[i : i + 1], _rows(c, i))
            torch.testing.assert_close(zi[0], z[i], rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(ldi[0], ld[i], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradients_reach_every_parameter(case: Case):
    """Autograd's gradient of every parameter matches a central finite difference (float64).

    The loss is ``<z, w> + sum(logabsdet)`` for a random ``w``; each parameter tensor is
    moved along its own random direction ``d`` by +-1e-6 and ``(L+ - L-) / 2e-6`` is
    compared with ``<grad, d>``. Measured over the registry: relative error <= 1e-6, absolute
    <= 1e-8, and every directional derivative >= 5e-4 in size; the tolerances leave room.
    A conditional case's context is checked like a parameter (its gradient trains encoders
    that produce contexts).
    """
    f = case.build().train()
    c = case.contexts()
    params: list[tuple[str, torch.Tensor]] = list(f.named_parameters())
    if c is not None:
        params.append(("<context>", c.requires_grad_(True)))
    assert_gradients_match(lambda x: fwd(f, x, c), case.inputs(), params)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_state_dict_round_trip(case: Case):
    f = case.build(seed=1)
    c = case.contexts()
    buf = io.BytesIO()
    torch.save(f.state_dict(), buf)
    buf.seek(0)
    torch.manual_seed(2)
    g = case.make().to(torch.float64)
    g.load_state_dict(torch.load(buf, weights_only=True))
    g.eval()
    x = case.inputs()
    with torch.no_grad():
        zf, ldf = fwd(f, x, c)
        zg, ldg = fwd(g, x, c)
        xf, _ = inv(f, zf, c)
        xg, _ = inv(g, zf, c)
    torch.testing.assert_close(zg, zf, rtol=0, atol=0)
    torch.testing.assert_close(ldg, ldf, rtol=0, atol=0)
    torch.testing.assert_close(xg, xf, rtol=0, atol=0)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_rejects_bad_input(case: Case):
    f = case.build()
    x, c = case.inputs(), case.contexts()
    # The message names the layer that refused (for containers, one of their parts).
    names = "|".join(sorted({type(m).__name__ for m in f.modules()}))
    with pytest.raises(InvalidInputError, match=names):
        fwd(f, x.to(torch.int64), c)
    c2 = case.contexts(batch=2)
    for shape in case.bad_shapes:
        bad = torch.randn(2, *shape, dtype=torch.float64)
        with pytest.raises(InvalidInputError, match=names):
            fwd(f, bad, c2)
        with pytest.raises(InvalidInputError, match=names):
            inv(f, bad, c2)


@pytest.mark.parametrize("case", CONDITIONAL, ids=lambda c: c.name)
def test_context_changes_the_map(case: Case):
    """Every row's latent, and its inverse, moves when only the context changes."""
    f = case.build()
    x, c1, c2 = case.inputs(), case.contexts(), case.contexts()
    with torch.no_grad():
        z1, _ = fwd(f, x, c1)
        z2, _ = fwd(f, x, c2)
        x_wrong, _ = inv(f, z1, c2)
    moved = (z1 - z2).flatten(1).norm(dim=1) / z1.flatten(1).norm(dim=1)
    assert (moved > 1e-6).all(), f"the context barely changes the output: {moved.tolist()}"
    back = (x_wrong - x).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)
    assert (back > 1e-6).all(), f"the inverse ignores the context: {back.tolist()}"


@pytest.mark.parametrize("case", CONDITIONAL, ids=lambda c: c.name)
def test_missing_or_malformed_context_is_refused(case: Case):
    f = case.build()
    x, c = case.inputs(), case.contexts()
    assert c is not None
    with torch.no_grad():
        z, _ = fwd(f, x, c)
    names = "|".join(sorted({type(m).__name__ for m in f.modules()}))
    k = c.shape[1]
    bad = {
        "missing": None,
        "too few features": c[:, : k - 1],
        "one row short": c[1:],
        "integer labels": torch.zeros(c.shape[0], dtype=torch.int64),
        "extra axis": c.unsqueeze(-1),
    }
    for what, ctx in bad.items():
        for step in (f, f.inverse):
            try:
                step(x if step is f else z, context=ctx)
            except InvalidInputError as e:
                assert re.search(names, str(e)), (what, str(e))
            else:
                pytest.fail(f"{type(f).__name__}: a context that is {what} was accepted")
