"""``Flow`` is a ``torch.distributions.Distribution`` as well as an ``nn.Module``."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import distributions as D

from invertible import DiagonalGaussian, Flow, StandardNormal
from invertible.models import build_glow, build_realnvp_2d


def _vector_flow(dim: int = 3, base=None) -> Flow:
    """A small RealNVP with its couplings moved off the identity (float64)."""
    torch.manual_seed(0)
    flow = build_realnvp_2d(dim, depth=2, hidden=8)
    if base is not None:
        flow = Flow(flow.bijection, base)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return flow.double()


def _summary(d: D.Distribution) -> tuple[torch.Size, torch.Size]:
    """Generic code written against the Distribution API only."""
    x = d.sample((5,))
    lp = d.log_prob(x)
    assert torch.isfinite(lp).all()
    return x.shape, lp.shape


def test_flow_is_a_torch_distribution():
    flow = _vector_flow()
    assert isinstance(flow, D.Distribution) and isinstance(flow, torch.nn.Module)
    assert flow.batch_shape == torch.Size() and flow.event_shape == torch.Size([3])
    assert flow.has_rsample
    image = build_glow((1, 8, 8), levels=1, depth=1, hidden=4)
    assert image.event_shape == torch.Size([1, 8, 8])


def test_sample_shapes():
    flow = _vector_flow()
    assert flow.sample(torch.Size([2, 3])).shape == (2, 3, 3)
    assert flow.sample((4,)).shape == (4, 3)
    assert flow.sample().shape == (3,)
    assert flow.sample(5, temperature=0.5).shape == (5, 3)  # the library's own call
    assert flow.rsample((2, 2)).shape == (2, 2, 3)
    x, lp = flow.sample_and_log_prob((2, 3))
    assert x.shape == (2, 3, 3) and lp.shape == (2, 3)


def test_log_prob_over_sample_axes_matches_the_batch_computation():
    flow = _vector_flow()
    x = flow.sample((2, 3))
    lp = flow.log_prob(x)
    assert lp.shape == (2, 3)
    z, logabsdet = flow.bijection(x.reshape(6, 3))
    expected = flow.base.log_prob(z) + logabsdet
    torch.testing.assert_close(lp, expected.reshape(2, 3))
    torch.testing.assert_close(flow.log_prob(x[1, 2]), expected[5])  # one event: a scalar
    x, lp = flow.sample_and_log_prob(4)
    torch.testing.assert_close(flow.log_prob(x), lp)


def test_rsample_gradients_reach_the_weights_and_sample_has_none():
    flow = _vector_flow(base=DiagonalGaussian((3,)))
    flow.rsample((7,)).pow(2).sum().backward()
    grads = {n: p.grad for n, p in flow.named_parameters()}
    assert all(g is not None for g in grads.values()), [n for n, g in grads.items() if g is None]
    assert grads["base.loc"].abs().sum() > 0  # through the reparameterised base sample
    assert any(g.abs().sum() > 0 for n, g in grads.items() if n.startswith("bijection."))
    assert not flow.sample((7,)).requires_grad


def test_generic_distribution_code_takes_a_flow_like_a_normal():
    normal = D.Independent(D.Normal(torch.zeros(3), torch.ones(3)), 1)
    flow = _vector_flow().float()
    assert _summary(flow) == _summary(normal) == (torch.Size([5, 3]), torch.Size([5]))
    # torch's own wrappers call batch_shape, event_shape, rsample and log_prob.
    shifted = D.TransformedDistribution(flow, [D.AffineTransform(1.0, 2.0, event_dim=1)])
    y = shifted.rsample((4,))
    assert y.shape == (4, 3)
    torch.testing.assert_close(
        shifted.log_prob(y), flow.log_prob((y - 1.0) / 2.0) - 3 * torch.log(torch.tensor(2.0))
    )


def test_flow_is_still_a_plain_module(tmp_path):
    flow = _vector_flow()
    twin = _vector_flow()
    with torch.no_grad():
        for p in twin.parameters():
            p.zero_()
    twin.load_state_dict(flow.state_dict())
    x = flow.sample((6,))
    torch.testing.assert_close(twin.log_prob(x), flow.log_prob(x))
    torch.testing.assert_close(flow(x), flow.log_prob(x))  # forward is log_prob
    assert flow.float().sample(2).dtype == torch.float32
    assert flow.event_shape == copy.deepcopy(flow).event_shape
    assert repr(flow).startswith("Flow(\n  (bijection)")
    assert sum(p.numel() for p in flow.parameters()) == sum(
        p.numel() for p in flow.bijection.parameters()) + sum(
        p.numel() for p in flow.base.parameters())


@pytest.mark.skipif(not torch.distributed.is_available(),
                    reason="this torch build has no torch.distributed")
def test_flow_can_be_wrapped_in_ddp(tmp_path):
    dist = torch.distributed
    assert not dist.is_initialized()
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        flow = Flow(_vector_flow().float().bijection, StandardNormal((3,)))
        ddp = torch.nn.parallel.DistributedDataParallel(flow)
        x = flow.sample((4,))
        loss = -ddp(x).mean()
        loss.backward()
        assert all(p.grad is not None for p in flow.parameters())
    finally:
        dist.destroy_process_group()
