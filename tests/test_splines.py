"""Rational-quadratic splines: knots, tails, extremes, degenerate bins, models, CLI errors."""

import json
import math

import pytest
import torch

from invertible import RQSpline, build_model, rational_quadratic_spline
from invertible.data import load_dataset
from invertible.layers.splines import _knots, spline_params
from invertible.models import ModelError
from one_line_errors import assert_one_line_errors

B = 2.5


def random_params(n: int, bins: int, scale: float = 1.0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, spline_params(bins), generator=g, dtype=torch.float64)


def round_trip(x: torch.Tensor, p: torch.Tensor):
    y, ld = rational_quadratic_spline(x, p, tail_bound=B)
    back, ld_inv = rational_quadratic_spline(y, p, inverse=True, tail_bound=B)
    return y, ld, back, ld_inv


def test_knots_map_to_knots_and_round_trip_exactly():
    bins, n = 6, 50
    p = random_params(n, bins)
    _, xs = _knots(p[:, :bins], B)
    _, ys = _knots(p[:, bins : 2 * bins], B)
    for j in range(bins + 1):
        y, ld, back, ld_inv = round_trip(xs[:, j].contiguous(), p)
        assert torch.allclose(y, ys[:, j], atol=1e-12), j
        assert (back - xs[:, j]).abs().max() < 1e-10, j
        assert (ld + ld_inv).abs().max() < 1e-10, j


def test_linear_tails_are_the_identity_and_continuous_at_the_bound():
    p = random_params(6, 5)
    x = torch.tensor([-1e4, -B - 1e-9, -B, B, B + 1e-9, 1e4], dtype=torch.float64)
    y, ld, back, _ = round_trip(x, p)
    assert torch.equal(y[[0, 1, 4, 5]], x[[0, 1, 4, 5]])
    assert torch.all(ld[[0, 1, 4, 5]] == 0)
    # The ends are knots with slope 1: value and log-slope meet the tails.
    assert torch.allclose(y[[2, 3]], x[[2, 3]], atol=1e-12)
    assert ld[[2, 3]].abs().max() < 1e-9
    assert torch.equal(back[[0, 1, 4, 5]], x[[0, 1, 4, 5]])


def test_extreme_inputs_and_degenerate_bins_stay_finite_and_monotonic():
    n = 400
    x = torch.linspace(-1e4, 1e4, n, dtype=torch.float64)
    x = torch.sort(torch.cat([x, torch.linspace(-B, B, n, dtype=torch.float64)])).values
    for p in (random_params(2 * n, 8, scale=1e4, seed=1), torch.full((2 * n, 23), -1e4,
              dtype=torch.float64), torch.full((2 * n, 23), 1e4, dtype=torch.float64)):
        xr = x.clone().requires_grad_()
        pr = p.clone().requires_grad_()
        y, ld = rational_quadratic_spline(xr, pr, tail_bound=B)
        assert torch.isfinite(y).all() and torch.isfinite(ld).all()
        (y.sum() + ld.sum()).backward()
        assert torch.isfinite(xr.grad).all() and torch.isfinite(pr.grad).all()
        back, ld_inv = rational_quadratic_spline(y.detach(), p, inverse=True, tail_bound=B)
        assert torch.isfinite(back).all() and torch.isfinite(ld_inv).all()
    # Shared parameters: the map must be monotonic even with the narrowest bins.
    shared = random_params(1, 8, scale=1e4, seed=2).expand(len(x), -1)
    y, _ = rational_quadratic_spline(x, shared, tail_bound=B)
    assert torch.all(torch.diff(y) >= 0)


def test_zero_parameters_are_the_identity():
    x = 3 * torch.randn(200, dtype=torch.float64)
    y, ld = rational_quadratic_spline(x, torch.zeros(200, 14, dtype=torch.float64), tail_bound=B)
    assert torch.allclose(y, x, atol=1e-12) and ld.abs().max() < 1e-12


def test_log_det_matches_finite_differences_in_float32():
    # float32 is what training uses; the analytic slope must agree there too.
    p = random_params(300, 8).float()
    x = (torch.rand(300) * 2 - 1) * B
    _, ld = rational_quadratic_spline(x, p, tail_bound=B)
    h = 1e-5
    hi, _ = rational_quadratic_spline(x.double() + h, p.double(), tail_bound=B)
    lo, _ = rational_quadratic_spline(x.double() - h, p.double(), tail_bound=B)
    # A central difference across a knot is not the slope: keep points away from knots.
    _, xs = _knots(p.double()[:, :8], B)
    far = ((x.double()[:, None] - xs).abs().min(dim=1).values > 2 * h)
    fd = torch.log((hi - lo) / (2 * h))
    assert far.sum() > 100
    assert (fd[far] - ld.double()[far]).abs().max() < 1e-4


def test_bad_parameters_and_options_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="do not fit"):
        rational_quadratic_spline(torch.zeros(4), torch.zeros(4, 10))
    with pytest.raises(ValueError, match="bins must be an integer >= 2"):
        RQSpline(3, bins=1)
    with pytest.raises(ValueError, match="tail_bound must be a finite number > 0"):
        RQSpline(3, tail_bound=math.inf)
    with pytest.raises(ModelError, match="bins must be an integer >= 2"):
        build_model("nsf-ar", (2,), bins=0)
    with pytest.raises(ModelError, match="tail_bound must be a number > 0"):
        build_model("nsf-coupling", (2,), tail_bound=-1.0)
    with pytest.raises(ModelError, match="coupling must be one of"):
        build_model("glow", (1, 8, 8), coupling="cubic")
    with pytest.raises(ModelError, match="is for vector data"):
        build_model("nsf-ar", (1, 8, 8))


@pytest.mark.parametrize("name", ["nsf-coupling", "nsf-ar"])
def test_nsf_models_learn_the_checkerboard(name):
    # Uniform on 8 unit squares: the true NLL is log 8 = 2.08 nats per point.
    torch.manual_seed(0)
    x = load_dataset("checkerboard", split="train", n_samples=2048).data
    test = load_dataset("checkerboard", split="test", n_samples=1024).data
    flow = build_model(name, (2,), depth=3, hidden=32, bins=8, tail_bound=3.0)
    opt = torch.optim.Adam(flow.parameters(), lr=3e-3)
    with torch.no_grad():
        before = -flow.log_prob(test).mean().item()
    for step in range(300):
        batch = x[torch.randint(len(x), (256,))]
        loss = -flow.log_prob(batch).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = -flow.log_prob(test).mean().item()
        z = flow.sample(64)
        back = flow.bijection.inverse(flow.bijection(test[:64])[0])[0]
    assert before > 2.8 and after < 2.6, (before, after)
    assert torch.isfinite(z).all()
    assert (back - test[:64]).abs().max() < 1e-4


def test_checkerboard_toy_lies_on_the_dark_squares():
    x = load_dataset("checkerboard", split="val", n_samples=5000).data.numpy()
    assert x.shape == (5000, 2) and abs(x).max() <= 2
    cells = (x // 1).astype(int) + 2
    assert ((cells[:, 0] + cells[:, 1]) % 2 == 0).all()
    assert len({tuple(c) for c in cells}) == 8


def test_cli_refuses_bad_spline_options_in_one_line(tmp_path, capsys):
    out = str(tmp_path / "run")
    base = ["train", "--data", "moons", "--steps", "1", "--out", out, "--no-progress"]
    assert_one_line_errors(
        {
            "bins": [*base, "--model", "nsf-ar", "--model-option", "bins=1"],
            "tail": [*base, "--model", "nsf-coupling", "--model-option", "tail_bound=0"],
            "image model on vectors": [*base, "--model", "glow"],
            "coupling": ["train", "--data", "digits", "--steps", "1", "--out", out,
                         "--no-progress", "--model", "glow", "--model-option",
                         'coupling="quintic"'],
        },
        capsys,
    )


@pytest.mark.parametrize("model", ["nsf-coupling", "nsf-ar"])
def test_cli_trains_evaluates_and_samples_a_spline_flow(model, tmp_path, capsys):
    from invertible.cli.main import main

    run = tmp_path / "run"
    assert main(["train", "--data", "checkerboard", "--model", model, "--steps", "20",
                 "--model-option", "depth=2", "--model-option", "bins=6",
                 "--out", str(run), "--no-progress"]) == 0
    assert main(["evaluate", str(run), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert math.isfinite(figures["bpd"])
    assert main(["sample", str(run), "-n", "100", "-o", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 0
