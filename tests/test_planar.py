"""Planar flow: exactness of the conditional layer (the registry cannot pass a context yet),
wide-range round trips, adversarial parameters, context validation."""

import pytest
import torch

from invertible import InvalidInputError, PlanarFlow, Sequential

from registry import assert_gradients_match

D, K = 5, 3


def conditional(seed: int = 0, scale: float = 0.3) -> PlanarFlow:
    """A float64 conditional layer whose context map is non-zero (moved off its init)."""
    torch.manual_seed(seed)
    f = PlanarFlow(D, context_features=K).double()
    with torch.no_grad():
        for p in f.parameters():
            p.add_(scale * torch.randn_like(p))
    return f


def data(b: int = 4, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, D, generator=g, dtype=torch.float64),
            torch.randn(b, K, generator=g, dtype=torch.float64))


@pytest.mark.parametrize("spread", ["normal", "wide"])
@pytest.mark.parametrize("context_features", [0, K])
def test_round_trip_float64_to_round_off(spread, context_features):
    torch.manual_seed(0)
    f = PlanarFlow(D, context_features).double()
    with torch.no_grad():
        for p in f.parameters():
            p.add_(0.5 * torch.randn_like(p))
    x = torch.randn(2000, D, dtype=torch.float64)
    if spread == "wide":  # |x| up to 50: the tanh saturates, the bracket is wide
        x = 50 * (2 * torch.rand(2000, D, dtype=torch.float64) - 1)
    ctx = torch.randn(2000, K, dtype=torch.float64) if context_features else None
    with torch.no_grad():
        z, ld = f(x, ctx)
        x2, ld_inv = f.inverse(z, ctx)
    assert (x2 - x).abs().max().item() <= 1e-10
    torch.testing.assert_close(ld_inv, -ld, rtol=1e-10, atol=1e-10)


def test_float32_round_trip():
    f = conditional().float()
    x, ctx = data(500)
    with torch.no_grad():
        z, ld = f(x.float(), ctx.float())
        x2, ld_inv = f.inverse(z, ctx.float())
    assert x2.dtype == torch.float32 and (x2 - x.float()).abs().max().item() <= 1e-5
    torch.testing.assert_close(ld_inv, -ld, rtol=1e-5, atol=1e-5)


def test_gradients_through_the_inverse_match_finite_differences():
    """The inverse's root is found without autograd and then one Newton step with it: the
    gradient must be the implicit-function one, for every parameter, the input and the
    context. (The registry checks the forward direction.)"""
    f = conditional()
    x, ctx = data()
    ctx.requires_grad_(True)
    params = [*f.named_parameters(), ("context", ctx)]
    assert_gradients_match(lambda z: f.inverse(z, ctx), x, params)


def test_context_changes_the_map_and_starts_at_the_free_parameters():
    torch.manual_seed(0)
    fresh = PlanarFlow(D, context_features=K).double()
    x, ctx = data()
    with torch.no_grad():
        # Zero-initialised context map: every context gives the free-parameter map.
        torch.testing.assert_close(fresh(x, ctx)[0], fresh(x, torch.zeros_like(ctx))[0])
        f = conditional()
        z1, ld1 = f(x, ctx)
        z2, ld2 = f(x, ctx + 1)
    assert (z1 - z2).abs().max().item() > 1e-3 and (ld1 - ld2).abs().max().item() > 1e-3


def test_takes_context_flag():
    assert PlanarFlow(D).takes_context is False
    assert PlanarFlow(D, context_features=K).takes_context is True


def test_sequential_passes_the_context_on():
    torch.manual_seed(0)
    f = Sequential(PlanarFlow(D, K), PlanarFlow(D), PlanarFlow(D, K)).double()
    x, ctx = data()
    with torch.no_grad():
        z, ld = f(x, context=ctx)
        x2, ld_inv = f.inverse(z, context=ctx)
    assert (x2 - x).abs().max().item() <= 1e-10
    torch.testing.assert_close(ld_inv, -ld, rtol=1e-10, atol=1e-10)


def _one_line_error(step, args, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match) as info:
        step(*args)
    message = str(info.value)
    assert message.startswith("PlanarFlow: ") and "\n" not in message, message


def test_bad_context_raises_one_line_errors():
    f = conditional()
    x, ctx = data()
    for step in (f, f.inverse):
        _one_line_error(step, (x,), r"conditional; pass context of shape \(B, 3\)")
        _one_line_error(step, (x, ctx[:2]), r"expected context of shape \(4, 3\)")
        _one_line_error(step, (x, ctx[:, :2]), r"got \(4, 2\)")
        _one_line_error(step, (x, ctx[:, 0]), r"got \(4\)")
        _one_line_error(step, (x, ctx.long()), "floating-point")
        _one_line_error(step, (x, ctx.tolist()), "floating-point")
        _one_line_error(step, (x[:, :4], ctx), r"expected input of shape \(B, 5\)")
    _one_line_error(PlanarFlow(D).double(), (x, ctx), "unconditional")
    with pytest.raises(ValueError, match="features"):
        PlanarFlow(0)


@pytest.mark.parametrize("raw", ["u_against_w", "large_u_and_b", "tiny_w"])
def test_adversarial_raw_parameters_stay_invertible(raw):
    """Raw ``u`` pointing against ``w`` (``w·u = -10``) would fold the plain map; the
    reparametrisation keeps it strictly increasing along ``w``."""
    torch.manual_seed(0)
    f = PlanarFlow(D).double()
    with torch.no_grad():
        f.w.copy_(torch.randn(D, dtype=torch.float64)).div_(f.w.norm())
        if raw == "u_against_w":
            f.u.copy_(-10 * f.w)
        elif raw == "large_u_and_b":
            f.u.copy_(50 * torch.randn(D, dtype=torch.float64))
            f.b.fill_(-7.0)
        else:
            f.w.mul_(1e-4)
            f.u.copy_(torch.randn(D, dtype=torch.float64))
        # Along the line x = t w/|w| + offset, w·f(x) must be strictly increasing in t.
        t = torch.linspace(-20, 20, 4001, dtype=torch.float64)
        offset = torch.randn(D, dtype=torch.float64)
        line = t[:, None] * f.w / f.w.norm() + offset
        z, ld = f(line)
        assert torch.isfinite(ld).all()
        assert ((z[1:] - z[:-1]) @ f.w > 0).all()
        x = torch.randn(2000, D, dtype=torch.float64)
        z, ld = f(x)
        x2, ld_inv = f.inverse(z)
    # The inverse's error is round-off over the slope along w (>= softplus(-10) here).
    assert (x2 - x).abs().max().item() <= 1e-9
    torch.testing.assert_close(ld_inv, -ld, rtol=1e-8, atol=1e-8)
