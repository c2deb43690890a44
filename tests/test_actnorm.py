"""ActNorm's data-dependent initialisation and its persistence across state_dict."""

from __future__ import annotations

import io

import pytest
import torch

from invertible import ActNorm, InvalidInputError


def _per_channel(z: torch.Tensor) -> torch.Tensor:
    return z.transpose(0, 1).reshape(z.shape[1], -1)


@pytest.mark.parametrize("shape", [(64, 5), (16, 3, 4, 5)])
def test_data_init_gives_zero_mean_unit_variance(shape):
    x = (
        4.0
        + torch.randn(*shape, dtype=torch.float64)
        * torch.linspace(0.5, 3.0, shape[1]).view(1, -1, *([1] * (len(shape) - 2))).double()
    )
    layer = ActNorm(shape[1]).double().train()
    assert not bool(layer.initialized)
    z, ld = layer(x)
    assert bool(layer.initialized)
    stats = _per_channel(z)
    torch.testing.assert_close(
        stats.mean(1), torch.zeros(shape[1], dtype=torch.float64), atol=1e-12, rtol=0
    )
    torch.testing.assert_close(
        stats.std(1, unbiased=False), torch.ones(shape[1], dtype=torch.float64), atol=1e-12, rtol=0
    )
    # log-det is H*W*sum(log_scale), i.e. minus the log of the product of the batch stds.
    spatial = x[0, 0].numel()
    expected = -spatial * torch.log(_per_channel(x).std(1, unbiased=False)).sum()
    torch.testing.assert_close(ld, expected.expand(shape[0]), rtol=1e-12, atol=1e-12)


def test_init_runs_once_and_not_in_eval():
    layer = ActNorm(3).double()
    layer.eval()
    x = 5.0 + torch.randn(10, 3, dtype=torch.float64)
    z, _ = layer(x)
    assert not bool(layer.initialized)
    torch.testing.assert_close(z, x)  # identity until initialised
    layer.train()
    layer(x)
    params = [p.detach().clone() for p in layer.parameters()]
    layer(x * 10 - 3)  # a second batch must not re-initialise
    for p, q in zip(params, layer.parameters(), strict=True):
        torch.testing.assert_close(p, q.detach(), rtol=0, atol=0)


def test_state_dict_round_trip_keeps_init():
    layer = ActNorm(4).train()
    first = 2.0 + 3.0 * torch.randn(32, 4, 2, 2)
    layer(first)
    buf = io.BytesIO()
    torch.save(layer.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    assert "initialized" in state and bool(state["initialized"])

    loaded = ActNorm(4).train()
    loaded.load_state_dict(state)
    other = -7.0 + 0.1 * torch.randn(32, 4, 2, 2)
    z_ref, ld_ref = layer(other)
    z, ld = loaded(other)  # training-mode call on new data: must NOT re-initialise
    torch.testing.assert_close(z, z_ref, rtol=0, atol=0)
    torch.testing.assert_close(ld, ld_ref, rtol=0, atol=0)
    # ... and both standardise with the FIRST batch's statistics, not those of `other`
    mean = _per_channel(first).mean(1).view(1, 4, 1, 1)
    std = _per_channel(first).std(1, unbiased=False).view(1, 4, 1, 1)
    torch.testing.assert_close(z, (other - mean) / std)
    torch.testing.assert_close(ld, (-4 * torch.log(std).sum()).expand(32))


def test_loading_an_uninitialised_state_re_enables_init():
    fresh = ActNorm(2).state_dict()
    layer = ActNorm(2).train()
    layer(torch.randn(8, 2))
    layer.load_state_dict(fresh)
    assert not bool(layer.initialized)
    z, _ = layer(10 + torch.randn(50, 2))
    assert bool(layer.initialized)
    torch.testing.assert_close(z.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(0, unbiased=False), torch.ones(2), atol=1e-5, rtol=0)


def test_mark_initialized_skips_data_init():
    layer = ActNorm(3).train()
    layer.mark_initialized()
    x = torch.randn(8, 3) + 4
    z, ld = layer(x)
    torch.testing.assert_close(z, x)
    torch.testing.assert_close(ld, torch.zeros(8))


def test_init_rejects_a_single_value_per_channel():
    with pytest.raises(InvalidInputError, match="ActNorm"):
        ActNorm(3).train()(torch.randn(1, 3))
