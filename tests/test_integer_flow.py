"""The integer discrete flow: an exact bijection on integers, its prior and its gradients."""

from __future__ import annotations

import math

import pytest
import torch

from codec_models import perturbed_flow
from invertible.codec import IntegerFlow, prior, round_ste, squeeze2d, unsqueeze2d

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPES = [((1, 8, 8), 2), ((1, 28, 28), 3), ((3, 16, 16), 3), ((2, 12, 20), 2),
          ((1, 32, 32), 4)]


@pytest.mark.parametrize(("shape", "levels"), SHAPES)
def test_round_trip_is_exact_on_random_uint8_images(shape, levels):
    flow = perturbed_flow(shape, levels=levels, seed=levels)
    x = torch.randint(0, 256, (5, *shape))
    with torch.no_grad():
        latents, params = flow(x)
        back = flow.inverse(latents)
    assert torch.equal(back.to(torch.int64), x)
    # The latents are integers, and the couplings really moved them.
    assert all(torch.equal(z, z.round()) for z in latents)
    h = x.to(torch.float32) - flow.offset
    for scale in flow.scales[:-1]:
        h = squeeze2d(h)
    moved = torch.cat([z.flatten(1) for z in latents], 1)
    assert not torch.equal(moved.sort(1).values, h.flatten(1).sort(1).values)
    assert [tuple(z.shape[1:]) for z in latents] == flow.latent_shapes
    assert sum(math.prod(s) for s in flow.latent_shapes) == math.prod(shape)
    assert all(p.shape == (*z.shape, 3 * flow.components) for z, p in zip(latents, params))


def test_round_trip_exact_in_float64_and_per_example():
    flow = perturbed_flow((1, 28, 28), levels=3).double()
    x = torch.randint(0, 256, (4, 1, 28, 28))
    with torch.no_grad():
        z, _ = flow(x)
        one = [t[:1] for t in flow(x[:1])[0]]
    assert torch.equal(flow.inverse(z).long(), x)
    assert all(torch.equal(a[:1], b) for a, b in zip(z, one))  # batch independence


@pytest.mark.parametrize("channels", [2, 3, 8])
def test_integer_coupling_is_exact_and_moves_only_the_second_half(channels):
    from invertible.codec import IntegerCoupling

    layer = IntegerCoupling(channels, hidden=8, seed=channels)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.randn_like(p) * 0.3)
        x = torch.randint(-300, 300, (4, channels, 5, 6)).float()
        z = layer(x)
        back = layer.inverse(z)
    assert torch.equal(back, x)
    assert torch.equal(z, z.round()) and not torch.equal(z, x[:, layer.perm])
    assert torch.equal(z[:, : layer.n_a], x[:, layer.perm][:, : layer.n_a])


def test_squeeze_round_trip():
    x = torch.arange(2 * 3 * 4 * 6).reshape(2, 3, 4, 6)
    assert squeeze2d(x).shape == (2, 12, 2, 3)
    assert torch.equal(unsqueeze2d(squeeze2d(x)), x)


def test_straight_through_rounding_passes_gradients():
    t = torch.tensor([0.2, 1.7, -2.5], requires_grad=True)
    y = round_ste(t)
    assert torch.equal(y.detach(), torch.round(t.detach()))
    y.sum().backward()
    assert torch.equal(t.grad, torch.ones(3))
    flow = perturbed_flow((1, 8, 8), levels=2)
    flow.train()
    loss = -flow.log_prob(torch.randint(0, 256, (4, 1, 8, 8))).mean()
    loss.backward()
    coupling_net = flow.scales[0].couplings[0].net
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in coupling_net.parameters())
    assert flow.top_params.grad.abs().sum() > 0


def test_prior_is_a_distribution_over_the_integers():
    params = torch.randn(6, 9, dtype=torch.float64) * 2
    z = torch.arange(-3000, 3000, dtype=torch.float64)
    mass = prior.log_prob(z[:, None], params[None]).exp().sum(0)
    assert torch.allclose(mass, torch.ones(6, dtype=torch.float64), atol=1e-9)
    # The coder's table holds the same probabilities, the escape the rest.
    low, count = prior.windows(params, (-3000, 2999))
    width = int(count.max())
    table = prior.probability_table(params, low, width)
    assert torch.allclose(table.sum(1), torch.ones(6, dtype=torch.float64), atol=1e-9)
    j = torch.arange(width)
    expect = prior.log_prob((low[:, None] + j).double(), params[:, None]).exp()
    assert torch.allclose(table[:, :-1], expect, atol=1e-12)


def test_log_prob_far_in_the_tails_stays_finite():
    params = torch.tensor([[0.0, 0.0, -4.0]])  # one component: mean 0, scale e^-4
    lp = prior.log_prob(torch.tensor([[1e4], [-1e4], [0.0]]), params[None])
    assert torch.isfinite(lp).all() and lp[2] > -1e-6


def test_samples_are_integer_images_in_range():
    from invertible.training.objectives import CodecObjective, DataSpec

    flow = perturbed_flow((1, 8, 8), n_bins=17, levels=2)
    obj = CodecObjective(flow, DataSpec("image", (1, 8, 8), 17))
    x = obj.sample(10)
    assert x.shape == (10, 1, 8, 8) and x.dtype == torch.uint8 and int(x.max()) <= 16


def test_sides_not_divisible_are_refused():
    with pytest.raises(ValueError, match="divisible by 4"):
        IntegerFlow((1, 30, 30), levels=3)
