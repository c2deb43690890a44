"""Conditional flows p(x | c): the context reaches the samples, the round trip is exact given
the context, bad contexts are refused in one line, a class-conditional fit uses its labels,
and ``invertible train --conditional`` / ``sample --label`` work end to end.

The exactness registry (``tests/cases/conditional.py``) runs every conditional layer and
model through the generic checks; this file covers the ``Flow`` API, training and the CLI.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.datasets import make_moons

from invertible import (
    ConditionalDiagonalGaussian,
    Flow,
    InvalidInputError,
    build_glow,
    build_maf,
)
from invertible.cli.main import main
from invertible.training.objectives import DataSpec, DensityObjective
from one_line_errors import assert_one_line_errors

from registry import perturb_parameters

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread

K = 3


def _glow() -> Flow:
    return build_glow((1, 4, 4), levels=2, depth=1, hidden=8, context_features=K)


def _maf() -> Flow:
    return build_maf(4, depth=2, hidden=8, context_features=K)


def _ready(make) -> Flow:
    """A float64 flow moved off its identity init (zero-initialised last layers would let
    the context have no effect at all), in eval mode, ActNorm initialised."""
    torch.manual_seed(0)
    flow = make().to(torch.float64)
    perturb_parameters(flow)
    for m in flow.modules():
        if hasattr(m, "mark_initialized"):
            m.mark_initialized()
    return flow.eval()


def _data(flow: Flow, n: int) -> torch.Tensor:
    shape = tuple(flow.event_shape)
    if len(shape) == 3:  # image flows start with a logit: data in (0, 1)
        return 0.05 + 0.9 * torch.rand(n, *shape, dtype=torch.float64)
    return torch.randn(n, *shape, dtype=torch.float64)


def _one_hot(labels: list[int]) -> torch.Tensor:
    return F.one_hot(torch.tensor(labels), K).to(torch.float64)


FLOWS = {"glow": _glow, "maf": _maf}


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_samples_depend_on_the_context(name):
    flow = _ready(FLOWS[name])
    draws = {}
    for label in range(K):
        torch.manual_seed(1)  # the same base noise for every label
        draws[label] = flow.sample(6, context=_one_hot([label] * 6))
    for a in range(K):
        for b in range(a + 1, K):
            gap = (draws[a] - draws[b]).flatten(1).norm(dim=1)
            assert (gap > 1e-3).all(), f"labels {a} and {b} give the same samples: {gap}"
    # The same noise and context give the same samples; a (K,) context is used for all rows.
    torch.manual_seed(1)
    again = flow.sample(6, context=_one_hot([0])[0])
    torch.testing.assert_close(again, draws[0], rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_round_trip_is_exact_given_the_context(name):
    flow = _ready(FLOWS[name])
    x = _data(flow, 5)
    c = torch.randn(5, K, dtype=torch.float64)  # any real context, not only one-hot
    with torch.no_grad():
        z, ld = flow.bijection(x, context=c)
        back, ld_inv = flow.bijection.inverse(z, context=c)
        wrong, _ = flow.bijection.inverse(z, context=c.flip(0))
    rel = ((back - x).norm() / x.norm()).item()
    assert rel <= 1e-10, f"inverse(forward(x, c), c) relative error {rel:.3e}"
    torch.testing.assert_close(ld_inv, -ld, rtol=1e-10, atol=1e-10)
    assert ((wrong - x).flatten(1).norm(dim=1) > 1e-4).any(), "the inverse ignores the context"
    # log_prob is the change of variables with that context.
    base = flow.base.log_prob(z, context=c) if flow.base.takes_context else flow.base.log_prob(z)
    torch.testing.assert_close(flow.log_prob(x, context=c), base + ld, rtol=1e-12, atol=1e-12)


def test_condition_is_a_torch_distribution_with_a_batch_of_contexts():
    flow = _ready(_maf)
    c = _one_hot([0, 1, 2, 1])
    d = flow.condition(c)
    assert isinstance(d, torch.distributions.Distribution)
    assert d.batch_shape == (4,) and d.event_shape == (4,)
    torch.manual_seed(1)
    x = d.sample((200,))
    assert x.shape == (200, 4, 4)
    lp = d.log_prob(x)
    assert lp.shape == (200, 4)
    # Draw s of row b is a sample given c[b]: the same density as the flow's own call.
    torch.testing.assert_close(lp[7], flow.log_prob(x[7], context=c))
    # The layout: draw s of row b is the flow's sample number s * B + b given c[b].
    torch.manual_seed(2)
    y = d.sample((3,))
    torch.manual_seed(2)
    torch.testing.assert_close(y, flow.sample(12, context=c.repeat(3, 1)).reshape(3, 4, 4))
    single = flow.condition(c[0])
    assert single.batch_shape == () and single.sample((5,)).shape == (5, 4)
    with pytest.raises(InvalidInputError, match="unconditional"):
        build_maf(4, depth=1, hidden=8).condition(c)
    with pytest.raises(InvalidInputError, match="expected shape"):
        d.log_prob(x[:, :3])


def test_glow_class_prior_is_a_conditional_gaussian_base():
    flow = _ready(_glow)
    assert isinstance(flow.base, ConditionalDiagonalGaussian) and flow.conditional
    c = _one_hot([0, 1, 2, 1])
    x = _data(flow, 4)
    z, ld = flow.bijection(x, context=c)
    loc, log_scale = flow.base.loc_log_scale(c)
    want = torch.distributions.Normal(loc, log_scale.exp()).log_prob(z).flatten(1).sum(1) + ld
    torch.testing.assert_close(flow.log_prob(x, context=c), want)
    assert not torch.equal(loc[0], loc[1]) and torch.equal(loc[1], loc[3])
    # Zero-initialised: a fresh prior is N(0, I) whatever the class.
    fresh = ConditionalDiagonalGaussian((2, 3), 3)
    torch.testing.assert_close(fresh.log_prob(torch.zeros(2, 2, 3), context=_one_hot([0, 2]).float()),
                               torch.full((2,), -3 * math.log(2 * math.pi)))
    torch.manual_seed(0)
    assert fresh.sample(2, 0.5, _one_hot([0, 2]).float()).std() < 1.0
    plain = build_glow((1, 4, 4), levels=2, depth=1, hidden=8, context_features=K,
                       class_prior=False)
    assert type(plain.base).__name__ == "StandardNormal" and plain.conditional
    with pytest.raises(InvalidInputError, match="this base is conditional"):
        fresh.log_prob(torch.zeros(2, 2, 3))


def test_flow_refuses_bad_contexts_in_one_line():
    flow = _ready(_glow)
    plain = build_glow((1, 4, 4), levels=1, depth=1, hidden=4).to(torch.float64)
    x = _data(flow, 4)
    c = _one_hot([0, 1, 2, 0])
    nan = c.clone()
    nan[1, 1] = float("nan")
    cases = {
        "missing": (flow, None, "conditional"),
        "too many features": (flow, torch.zeros(4, K + 1, dtype=torch.float64), "context"),
        "too few rows": (flow, c[:3], "rows"),
        "non-finite": (flow, nan, "non-finite"),
        "infinite": (flow, torch.full((4, K), float("inf"), dtype=torch.float64), "non-finite"),
        "integer labels": (flow, torch.tensor([0, 1, 2, 0]), "floating-point"),
        "on an unconditional flow": (plain, c, "unconditional"),
    }
    for what, (f, ctx, word) in cases.items():
        with pytest.raises(InvalidInputError, match=word) as info:
            f.log_prob(x, context=ctx)
        assert "\n" not in str(info.value), what
    with pytest.raises(InvalidInputError, match="conditional"):
        flow.sample(2)
    with pytest.raises(InvalidInputError, match="unconditional"):
        plain.sample(2, context=c[:2])
    assert flow.conditional and not plain.conditional


# -- a tiny class-conditional fit -------------------------------------------------------------
def test_a_class_conditional_fit_prefers_the_right_label():
    """Two moons, labelled by moon, through ``DensityObjective(conditional=True)``.

    Calibration (one thread, 150 Adam steps, about 1.3 s; seeds 0, 1, 2): on held-out
    points the mean log p(x | true moon) - log p(x | other moon) is 22.7, 169 and 31.4 nats
    (the other moon's density puts a point far in its tails) and ``argmax_y p(x | y)`` is
    the true moon for 100% of them; untrained, the gap is 0 and no point prefers its own
    label (zero-initialised conditioners ignore the context). Thresholds: 2 nats and 90%.
    """
    torch.manual_seed(0)

    def moons(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = make_moons(n, noise=0.1, random_state=seed)
        x = (x - np.array([0.5, 0.25])) / np.array([0.87, 0.5])
        return torch.tensor(x, dtype=torch.float32), torch.tensor(y)

    (x, y), (xt, yt) = moons(1024, 1), moons(500, 2)
    flow = build_maf(2, depth=4, hidden=32, context_features=2)
    objective = DensityObjective(flow, DataSpec("vector", (2,), None, n_classes=2),
                                 conditional=True)
    opt = torch.optim.Adam(objective.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        idx = torch.randint(len(x), (256,), generator=g)
        loss = objective(x[idx], y[idx])["loss"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        right = flow.log_prob(xt, context=objective.context(yt))
        wrong = flow.log_prob(xt, context=objective.context(1 - yt))
    gap = (right - wrong).mean().item()
    accuracy = (right > wrong).float().mean().item()
    assert gap > 2.0, f"log p(x | right label) - log p(x | wrong label) = {gap:.3f} nats"
    assert accuracy > 0.9, f"the likelier label is the true one for only {accuracy:.1%}"


def test_density_objective_checks_its_flow_and_data():
    from invertible.training.objectives import TaskError

    labelled = DataSpec("vector", (4,), None, n_classes=K)
    with pytest.raises(TaskError, match="labelled"):
        DensityObjective(_maf(), DataSpec("vector", (4,), None), conditional=True)
    with pytest.raises(TaskError, match="--conditional"):
        DensityObjective(_maf(), labelled)
    with pytest.raises(TaskError, match="conditional flow"):
        DensityObjective(build_maf(4, depth=1, hidden=4), labelled, conditional=True)
    objective = DensityObjective(_maf(), labelled, conditional=True)
    with pytest.raises(TaskError, match="labelled"):
        objective(torch.randn(2, 4))  # no labels
    with pytest.raises(TaskError, match="out of range"):
        objective.sample_class(torch.tensor([K]))
    with pytest.raises(TaskError, match="not conditional"):
        DensityObjective(build_maf(4, depth=1, hidden=4), labelled).sample_class([0])
    # Plain sampling goes through the classes in turn.
    assert objective.sample(7).shape == (7, 4)


# -- the command line -------------------------------------------------------------------------
TINY_GLOW = ["--data", "digits", "--conditional", "--model", "glow", "--model-option",
             "levels=1", "--depth", "1", "--hidden", "8", "--steps", "16", "--warmup", "2",
             "--batch-size", "32", "--val-every", "8", "--no-progress"]


@pytest.fixture(scope="module")
def cond_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cond") / "glow"
    assert main(["train", *TINY_GLOW, "--out", str(out)]) == 0
    return out


def test_train_conditional_records_it_and_draws_class_grids(cond_run):
    doc = json.loads((cond_run / "config.json").read_text())
    assert doc["train"]["conditional"] is True and doc["data"]["n_classes"] == 10
    # The checkpoint picture is a class grid: 10 rows (classes) of 6 (64 // 10 per class).
    w, h = Image.open(cond_run / "samples" / "final.png").size
    assert h > w


def test_sample_a_label_and_a_class_grid(cond_run, tmp_path, capsys):
    threes = tmp_path / "threes.png"
    assert main(["sample", str(cond_run), "--label", "3", "-o", str(threes)]) == 0
    w, h = Image.open(threes).size
    assert w == h  # 64 samples: an 8 x 8 grid
    assert "of class 3" in capsys.readouterr().out
    # The label reaches the model: the same seed, another label, other images.
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    for path, label in ((a, "3"), (b, "5")):
        assert main(["sample", str(cond_run), "-n", "8", "--seed", "0", "--label", label,
                     "-o", str(path)]) == 0
    assert np.load(a).shape == (8, 1, 8, 8) and not np.array_equal(np.load(a), np.load(b))
    # Without --label: whole rows, row k = class k (25 -> 2 per class).
    grid = tmp_path / "grid.npy"
    assert main(["sample", str(cond_run), "-n", "25", "-o", str(grid)]) == 0
    assert np.load(grid).shape == (20, 1, 8, 8)
    assert "2 of each of the 10 classes" in capsys.readouterr().out


def test_evaluate_reports_conditional_bits_per_dim(cond_run, capsys):
    assert main(["evaluate", str(cond_run), "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("test conditional bits/dim")
    figures = json.loads(lines[-1])
    recs = [json.loads(r) for r in (cond_run / "metrics.jsonl").read_text().splitlines()]
    test = next(r for r in recs if r.get("event") == "test")
    assert figures["conditional"] is True
    assert figures["bpd"] == pytest.approx(test["test_bpd"], rel=1e-9)
    assert figures["round_trip_max"] < 1e-5


def test_resume_rebuilds_the_conditional_model(cond_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(cond_run, run)
    assert main(["train", "--resume", str(run), "--steps", "18", "--no-progress"]) == 0
    recs = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(r.get("step", 0) for r in recs) == 18


def test_conditional_mistakes_get_one_line(cond_run, tmp_path, capsys):
    r, t = str(cond_run), str(tmp_path)
    tiny = ["--steps", "1", "--no-progress"]
    assert_one_line_errors({
        "label out of range": ["sample", r, "--label", "10", "-o", f"{t}/a.png"],
        "negative label": ["sample", r, "--label", "-1", "-o", f"{t}/b.png"],
        "no labels in the data": ["train", "--data", "moons", "--conditional", *tiny,
                                  "--out", f"{t}/c"],
        "model without a conditioner": ["train", "--conditional", "--model", "elementwise",
                                        *tiny, "--out", f"{t}/d"],
        "pure i-ConvNet": ["train", "--conditional", "--model", "iconvnet", *tiny,
                           "--out", f"{t}/e"],
        "another task": ["train", "--conditional", "--task", "classify", *tiny,
                         "--out", f"{t}/f"],
        "context as a model option": ["train", "--model", "glow", "--model-option",
                                      "context_features=3", *tiny, "--out", f"{t}/g"],
        "changed on resume": ["train", "--resume", r, "--conditional"],
        "encode takes no labels": ["encode", r, "--split", "test", "-o", f"{t}/z.npy"],
    }, capsys)
    assert not any((tmp_path / n).exists() for n in "cdefg")
