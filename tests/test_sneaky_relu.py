"""SneakyReLU's hand-written backward against autograd through the plain formulas."""

from __future__ import annotations

import pytest
import torch

from invertible import SneakyReLU


def _reference(x: torch.Tensor, slope: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's formulas, left to autograd: ``(z, per-sample log-det)``."""
    a = (1 - slope) / (1 + slope)
    z = (x + a * (torch.sqrt(1 + x * x) - 1)) / (1 + a)
    derivative = (1 + a * x / torch.sqrt(1 + x * x)) / (1 + a)
    return z, torch.log(derivative).flatten(1).sum(1)


@pytest.mark.parametrize("slope", [0.1, 0.5, 0.9])
def test_values_and_gradients_match_autograd_through_the_formulas(slope):
    torch.manual_seed(0)
    x = (3 * torch.randn(5, 3, 4, 4, dtype=torch.float64)).requires_grad_(True)
    z, ld = SneakyReLU(slope)(x)
    z_ref, ld_ref = _reference(x, slope)
    torch.testing.assert_close(z, z_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ld, ld_ref, rtol=1e-12, atol=1e-12)
    gz, gld = torch.randn_like(z), torch.randn_like(ld)
    for outputs, refs in [((z, ld), (z_ref, ld_ref)), ((z,), (z_ref,)), ((ld,), (ld_ref,))]:
        grads = [gz if o is z else gld for o in outputs]
        (ours,) = torch.autograd.grad(outputs, x, grads, retain_graph=True)
        (theirs,) = torch.autograd.grad(refs, x, grads, retain_graph=True)
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)


def test_first_and_second_derivatives_pass_gradcheck():
    x = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    layer = SneakyReLU(0.2)
    assert torch.autograd.gradcheck(layer, (x,))
    assert torch.autograd.gradgradcheck(layer, (x,))


def test_per_sample_gradients_under_vmap_match_a_loop():
    x = torch.randn(4, 6, dtype=torch.float64)
    scale = torch.tensor(1.7, dtype=torch.float64)
    layer = SneakyReLU(0.3)

    def loss(s, xi):
        z, ld = layer(s * xi.unsqueeze(0))
        return (z**2).sum() - ld.sum()

    batched = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0))(scale, x)
    looped = torch.stack([torch.func.grad(loss)(scale, xi) for xi in x])
    torch.testing.assert_close(batched, looped, rtol=1e-12, atol=1e-12)
