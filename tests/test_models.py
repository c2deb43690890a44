"""Model builders: shapes of log_prob / sample / bits_per_dim and sample round trips."""

from __future__ import annotations

import math

import pytest
import torch

from invertible import ActNorm, Flow, InvalidInputError, StandardNormal
from invertible.models.glow import build_glow
from invertible.models.maf import build_maf
from invertible.models.realnvp import build_realnvp, build_realnvp_2d

IMAGE_BUILDERS = {
    "realnvp": lambda shape: build_realnvp(shape, levels=2, depth=2, hidden=8, blocks=1),
    "glow": lambda shape: build_glow(shape, levels=2, depth=2, hidden=8),
}
VECTOR_BUILDERS = {
    "realnvp_2d": lambda dim: build_realnvp_2d(dim, depth=4, hidden=16),
    "maf": lambda dim: build_maf(dim, depth=3, hidden=16),
}


def _off_identity(flow: Flow, data: torch.Tensor) -> Flow:
    """Data-init ActNorm with a training-mode pass, then move every weight off its init."""
    flow.train()
    with torch.no_grad():
        flow.log_prob(data)
        for p in flow.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return flow.eval()


def _check_flow(flow: Flow, data: torch.Tensor) -> None:
    shape = tuple(data.shape[1:])
    assert isinstance(flow.base, StandardNormal) and tuple(flow.base.event_shape) == shape
    lp = flow.log_prob(data)
    assert lp.shape == (data.shape[0],) and torch.isfinite(lp).all()
    x = flow.sample(5)
    assert x.shape == (5, *shape) and torch.isfinite(x).all()
    # Sampling returns the model density of its samples; evaluating them again must agree.
    xs, lps = flow.sample_and_log_prob(16)
    if len(shape) == 3:
        # The logit preprocessing maps extreme latents slightly outside [0, 1], where the
        # data density is not defined: draw cooler latents and compare on samples inside.
        with torch.no_grad():
            z = flow.base.sample(16, temperature=0.3)
            xs, inv_ld = flow.bijection.inverse(z)
            lps = flow.base.log_prob(z) - inv_ld
        inside = ((xs >= 0) & (xs <= 1)).flatten(1).all(1)
        assert inside.sum() >= 4, "too few samples inside [0, 1] to compare"
        xs, lps = xs[inside], lps[inside]
    with torch.no_grad():
        again = flow.log_prob(xs)
    torch.testing.assert_close(again, lps, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("name", sorted(IMAGE_BUILDERS))
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 4, 8)])
def test_image_models(name: str, shape: tuple[int, int, int]):
    torch.manual_seed(0)
    flow = IMAGE_BUILDERS[name](shape).to(torch.float64)
    data = (torch.randint(0, 256, (7, *shape)) + torch.rand(7, *shape)).double() / 256
    flow = _off_identity(flow, data)
    _check_flow(flow, data)
    bpd = flow.bits_per_dim(data)
    assert bpd.shape == (7,) and torch.isfinite(bpd).all()
    d = math.prod(shape)
    expected = -(flow.log_prob(data) - d * math.log(256)) / (d * math.log(2))
    torch.testing.assert_close(bpd, expected)
    # The latent has the data's layout, and model samples land (almost) in [0, 1].
    with torch.no_grad():
        xs = flow.sample(32, temperature=0.5)
    assert xs.shape == (32, *shape)
    assert xs.min() > -0.06 and xs.max() < 1.06


@pytest.mark.parametrize("name", sorted(VECTOR_BUILDERS))
@pytest.mark.parametrize("dim", [2, 5])
def test_vector_models(name: str, dim: int):
    torch.manual_seed(0)
    flow = VECTOR_BUILDERS[name](dim).to(torch.float64)
    data = torch.randn(9, dim, dtype=torch.float64)
    _check_flow(_off_identity(flow, data), data)


@pytest.mark.parametrize("name", sorted(IMAGE_BUILDERS))
def test_fresh_image_model_is_logit_gaussian(name: str):
    """At init every coupling is the identity, so only the logit preprocessing remains
    (ActNorm's data init does not run in eval mode)."""
    shape = (1, 8, 8)
    flow = IMAGE_BUILDERS[name](shape).to(torch.float64).eval()
    # Glow's 1x1 convolutions start as random rotations (volume and norm preserving), but
    # are drawn in float32, so they are orthogonal only to about 1e-7.
    tol = 1e-6 if name == "glow" else 1e-9
    x = 0.05 + 0.9 * torch.rand(4, *shape, dtype=torch.float64)
    alpha = 0.05
    p = alpha + (1 - 2 * alpha) * x
    y = torch.log(p) - torch.log1p(-p)
    ld = (math.log(1 - 2 * alpha) - torch.log(p) - torch.log1p(-p)).flatten(1).sum(1)
    ref = -0.5 * (y**2).flatten(1).sum(1) - 0.5 * 64 * math.log(2 * math.pi) + ld
    torch.testing.assert_close(flow.log_prob(x), ref, rtol=tol, atol=tol)


def test_glow_actnorm_initialises_from_first_training_batch():
    torch.manual_seed(0)
    flow = build_glow((1, 8, 8), levels=1, depth=2, hidden=8)
    norms = [m for m in flow.modules() if isinstance(m, ActNorm)]
    assert norms and not any(bool(m.initialized) for m in norms)
    flow.train()
    flow.log_prob(torch.rand(16, 1, 8, 8))
    assert all(bool(m.initialized) for m in norms)


@pytest.mark.parametrize(
    "build",
    [
        lambda: build_glow((1, 28, 28), levels=3),
        lambda: build_realnvp((1, 6, 6), levels=2),
        lambda: build_realnvp((1, 4, 4), levels=2),
        lambda: build_glow((1, 8), levels=1),
        lambda: build_realnvp_2d(dim=1),
        lambda: build_maf(1),
        lambda: build_glow((1, 8, 8), depth=0),
    ],
)
def test_impossible_configurations_raise(build):
    with pytest.raises(ValueError):
        build()


def test_image_models_reject_data_outside_unit_interval():
    flow = build_glow((1, 4, 4), levels=1, depth=1, hidden=4)
    with pytest.raises(InvalidInputError, match="LogitTransform"):
        flow.log_prob(torch.full((2, 1, 4, 4), 1.5))


def test_mnist_sized_defaults_build_and_run():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 28, 28)
    for flow in (build_glow((1, 28, 28)), build_realnvp((1, 28, 28))):
        with torch.no_grad():
            assert flow.bits_per_dim(x).shape == (2,)
            assert flow.sample(2).shape == (2, 1, 28, 28)


# -- registry: option values are checked by the builders, bugs are not relabelled -----------
BAD_OPTIONS = [
    ("glow", (1, 8, 8), {"depth": 0}, "depth must be an integer >= 1"),
    ("glow", (1, 8, 8), {"hidden": "64"}, "hidden must be an integer"),
    ("glow", (1, 8, 8), {"levels": 2.0}, "levels must be an integer"),
    ("glow", (1, 8, 8), {"levels": 4}, "divisible by 16"),
    ("glow", (1, 8, 8), {"alpha": 0.5}, r"alpha must be a number in \[0, 0.5\)"),
    ("realnvp", (1, 8, 8), {"blocks": -1}, "blocks must be an integer >= 0"),
    ("realnvp", (1, 8, 8), {"depth": True}, "depth must be an integer"),
    ("realnvp", (1, 4, 4), {"levels": 2}, "too small for a checkerboard"),
    ("maf", (6,), {"hidden": 4}, r"hidden must be >= dim - 1 = 5"),
    ("maf", (6,), {"layers": 0}, "layers must be an integer >= 1"),
    ("maf", (1,), {}, "dim"),
    ("iconvnet", (1, 8, 8), {"downsample": "bilinear"}, "downsample must be one of"),
    ("iconvnet", (1, 8, 8), {"hybrid": 1}, "hybrid must be true or false"),
    ("iconvnet", (1, 8, 8), {"kernel_size": 4}, "kernel_size must be odd"),
    ("iconvnet", (1, 8, 8), {"keep": 1.5}, r"keep must be a number in \(0, 1\)"),
    ("iconvnet", (1, 8, 8), {"linalg": "quaternion"}, "linalg must be one of complex, real"),
    ("iconvnet", (1, 8, 8), {"levels": 4}, "cannot be halved 4 times"),
    ("iconvnet", (1, 8, 8), {"nope": 1}, "no option 'nope'"),
    ("elementwise", (3,), {"depth": "2"}, "depth must be an integer"),
]


@pytest.mark.parametrize(
    ("name", "shape", "options", "message"),
    BAD_OPTIONS,
    ids=[f"{name}-{'-'.join(opts) or 'shape'}" for name, _, opts, _ in BAD_OPTIONS],
)
def test_bad_option_values_are_model_errors(name, shape, options, message):
    from invertible.models import ModelError, build_model

    with pytest.raises(ModelError, match=message) as info:
        build_model(name, shape, **options)
    assert "\n" not in str(info.value) and "cannot build" not in str(info.value)


def test_good_options_build():
    from invertible.models import build_model

    assert isinstance(build_model("iconvnet", (1, 8, 8), depth=0, keep=0.25, hybrid=True), Flow)
    assert isinstance(build_model("iconvnet", (1, 8, 8), levels=3, stem=False), Flow)
    assert isinstance(build_model("maf", (6,), hidden=5, layers=1, depth=1), Flow)
    assert isinstance(build_model("glow", (1, 8, 8), levels=1, depth=1, hidden=4, alpha=0), Flow)


@pytest.fixture
def broken_model():
    """A throwaway registry entry whose builder has a bug; removed afterwards."""
    from invertible.models import MODELS, ModelSpec, register_model

    def build_broken(dim: int, depth: int = 1, error: str = "TypeError") -> Flow:
        # As if a layer constructor were called with a wrong argument.
        raise {"TypeError": TypeError, "ValueError": ValueError}[error]("internal bug")

    register_model(
        ModelSpec("broken", build_broken, frozenset({"vector"}), "test", shape_arg="dim"),
        replace=True,
    )
    yield "broken"
    del MODELS["broken"]


@pytest.mark.parametrize("error", [TypeError, ValueError])
def test_bugs_inside_builders_propagate_unchanged(broken_model, error):
    from invertible.models import ModelError, build_model

    with pytest.raises(error, match="internal bug") as info:
        build_model(broken_model, (3,), error=error.__name__)
    assert not isinstance(info.value, ModelError)
