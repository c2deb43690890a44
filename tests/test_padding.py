"""circular_pad: the values and gradient of F.pad's circular mode, functorch-safe."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from invertible import CircularConv2d, InvalidInputError, Sequential, circular_pad


@pytest.mark.parametrize(
    "shape, p",
    [((2, 3, 5, 7), 1), ((1, 2, 4, 4), 2), ((3, 1, 9, 6), 3), ((2, 2, 3, 5), 3), ((4, 6, 6), 2)],
)
def test_circular_pad_matches_f_pad_in_value_and_gradient(shape, p):
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    ours, reference = circular_pad(x, p), F.pad(x, (p, p, p, p), mode="circular")
    assert torch.equal(ours, reference)
    g = torch.randn_like(reference)
    (g_ours,) = torch.autograd.grad(ours, x, g)
    (g_ref,) = torch.autograd.grad(reference, x, g)
    torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=1e-13)


@pytest.mark.parametrize("shape, p", [((5, 7), 2), ((2, 1, 3, 4, 5), 1)])
def test_circular_pad_of_other_ranks_pads_the_last_two_axes(shape, p):
    # F.pad's circular mode takes only 3-D and 4-D input; the reference pads a 4-D view.
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    flat = x.reshape(-1, 1, *shape[-2:])
    reference = F.pad(flat, (p, p, p, p), mode="circular")
    reference = reference.reshape(*shape[:-2], shape[-2] + 2 * p, shape[-1] + 2 * p)
    ours = circular_pad(x, p)
    assert torch.equal(ours, reference)
    g = torch.randn_like(reference)
    (g_ours,) = torch.autograd.grad(ours, x, g)
    (g_ref,) = torch.autograd.grad(reference, x, g)
    torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=1e-13)


def test_circular_pad_without_a_gradient_is_the_same_copy():
    x = torch.randn(2, 3, 5, 4)
    assert torch.equal(circular_pad(x, 2), F.pad(x, (2, 2, 2, 2), mode="circular"))
    assert circular_pad(x, 0) is x


def test_circular_pad_passes_gradcheck_and_gradgradcheck():
    x = torch.randn(2, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: circular_pad(t, 2), (x,))
    assert torch.autograd.gradgradcheck(lambda t: circular_pad(t, 1), (x,))


def test_per_sample_gradients_through_a_circular_conv_match_a_loop():
    # DP training takes per-sample gradients with torch.func (vmap of grad).
    torch.manual_seed(0)
    # Two layers, so that the second pads an input that carries a gradient.
    layer = Sequential(CircularConv2d(3, 3, init_noise=0.3), CircularConv2d(3, 3, init_noise=0.3))
    layer = layer.double()
    x = torch.randn(4, 3, 6, 6, dtype=torch.float64)
    params = {k: v.detach() for k, v in layer.named_parameters()}

    def loss(p, xi):
        z = torch.func.functional_call(layer, p, (xi.unsqueeze(0),))[0]
        return (z**2).sum()

    batched = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0))(params, x)
    for i in range(x.shape[0]):
        looped = torch.func.grad(loss)(params, x[i])
        for k in params:
            torch.testing.assert_close(batched[k][i], looped[k], rtol=1e-10, atol=1e-12)


def test_input_gradient_of_a_circular_conv_is_the_transposed_dense_jacobian():
    torch.manual_seed(1)
    layer = CircularConv2d(2, 3, init_noise=0.3).double()
    n = 2 * 5 * 4
    with torch.no_grad():  # the columns from forward passes alone
        eye = torch.eye(n, dtype=torch.float64).reshape(n, 2, 5, 4)
        jac = (layer(eye)[0] - layer(torch.zeros_like(eye[:1]))[0]).reshape(n, n).T
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    z = layer(x)[0]
    g = torch.randn_like(z)
    (gx,) = torch.autograd.grad(z, x, g)
    torch.testing.assert_close(gx.reshape(-1), jac.T @ g.reshape(-1), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "x, p, message",
    [
        (torch.zeros(5), 1, "expected"),
        (torch.zeros(1, 1, 3, 4), 4, "padding 4 must lie in"),
        (torch.zeros(1, 1, 3, 4), -1, "padding -1 must lie in"),
    ],
)
def test_circular_pad_rejects_bad_input_with_one_line(x, p, message):
    with pytest.raises(InvalidInputError, match=message) as err:
        circular_pad(x, p)
    assert "\n" not in str(err.value)
