"""Differentially private training: the accountant against opacus's own, per-sample
gradients against a loop over single examples, the clipping bound, and the command line."""

import json

import pytest
import torch
from torch import nn

from invertible import privacy
from invertible.cli.main import main
from invertible.models.registry import build_model
from invertible.privacy import (
    DPSGD,
    noise_multiplier_for,
    per_sample_gradients,
    skip_data_dependent_init,
    spent_epsilon,
)
from invertible.training import TrainConfig, Trainer, load_split
from invertible.training.objectives.base import DataSpec
from invertible.training.objectives.density import DensityObjective
from one_line_errors import assert_one_line_errors


def test_spent_epsilon_matches_opacus_privacy_engine():
    """Our closed-form history equals opacus's accountant stepped by a real DP training."""
    from opacus import PrivacyEngine

    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    data = torch.utils.data.TensorDataset(torch.randn(200, 4), torch.randn(200, 1))
    loader = torch.utils.data.DataLoader(data, batch_size=20)
    engine = PrivacyEngine(accountant="rdp")
    model, opt, loader = engine.make_private(
        module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        data_loader=loader, noise_multiplier=1.3, max_grad_norm=1.0)
    steps = 0
    for _ in range(3):
        for xb, yb in loader:
            opt.zero_grad()
            nn.functional.mse_loss(model(xb), yb).backward()
            opt.step()
            steps += 1
    theirs = engine.get_epsilon(1e-5)
    ours = spent_epsilon(1.3, 20 / 200, steps, 1e-5, "rdp")
    # Our RDP orders extend opacus's defaults; here the optimum lies inside them.
    assert ours == pytest.approx(theirs, rel=1e-9)
    assert 0 < ours < 100


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_noise_calibration_spends_the_target(accountant):
    q, steps, delta = 256 / 60_000, 2_000, 1e-5
    for eps in (1.0, 3.0, 8.0):
        sigma = noise_multiplier_for(eps, delta, q, steps, accountant)
        spent = spent_epsilon(sigma, q, steps, delta, accountant)
        assert eps - 0.05 <= spent <= eps + 1e-9
    # More noise, less epsilon; more steps, more epsilon.
    assert spent_epsilon(2.0, q, steps, delta, accountant) < spent_epsilon(
        1.0, q, steps, delta, accountant)
    assert spent_epsilon(1.0, q, steps, delta, accountant) < spent_epsilon(
        1.0, q, 2 * steps, delta, accountant)


def test_known_setting_matches_opacus_stepwise_accountant():
    """Abadi et al.'s MNIST setting (q = 0.01, sigma = 4, 10,000 steps, delta = 1e-5),
    accounted step by step by opacus's RDP accountant, equals our one-phase history."""
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    for _ in range(10_000):
        acc.step(noise_multiplier=4.0, sample_rate=0.01)
    theirs = acc.get_epsilon(1e-5, alphas=privacy.accounting.RDP_ORDERS)
    assert spent_epsilon(4.0, 0.01, 10_000, 1e-5) == pytest.approx(theirs, rel=1e-12)
    assert 1.0 < theirs < 1.5  # the moments accountant's 1.26 (their Fig. 4), bounded by RDP


class _NegLogLik(nn.Module):
    """-log p(x | y) per example: the density loss without dequantization noise, so that a
    loop and vmap see the same function."""

    def __init__(self, flow, classes):
        super().__init__()
        self.flow, self.classes = flow, classes

    def forward(self, x, y=None):
        c = None
        if self.classes:
            c = (y[:, None] == torch.arange(self.classes)).to(x.dtype)
        return {"loss": -self.flow.log_prob(x, c)}


CASES = {
    "glow": ("glow", (1, 8, 8), {"levels": 2, "depth": 2, "hidden": 8}, 0),
    "glow-conditional": ("glow", (1, 8, 8), {"levels": 2, "depth": 1, "hidden": 8,
                                             "context_features": 3, "class_prior": True}, 3),
    "realnvp": ("realnvp", (1, 8, 8), {"depth": 2, "hidden": 8}, 0),
    "iconvnet": ("iconvnet", (1, 8, 8), {}, 0),
    "iconvnet-hybrid-conditional": ("iconvnet", (1, 8, 8), {"hybrid": True,
                                                            "context_features": 3}, 3),
    "maf-conditional": ("maf", (5,), {"depth": 2, "hidden": 8, "context_features": 3}, 3),
    "nsf-coupling": ("nsf-coupling", (5,), {"depth": 2, "hidden": 8}, 0),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_per_sample_gradients_match_a_loop(case):
    name, shape, opts, classes = CASES[case]
    torch.manual_seed(0)
    flow = build_model(name, shape, **opts).double()
    module = _NegLogLik(flow, classes)
    n = 5
    if len(shape) == 3:
        x = (torch.randint(0, 17, (n, *shape)).double() + 0.5) / 17
    else:
        x = torch.randn(n, *shape, dtype=torch.float64)
    y = torch.randint(0, max(classes, 1), (n,)) if classes else None
    with torch.no_grad():  # data-dependent init on this batch, then frozen like DP training
        module(x, y)
    skip_data_dependent_init(module)
    grads, metrics = per_sample_gradients(module, x, y)
    params = {k: p for k, p in module.named_parameters() if p.requires_grad}
    assert set(grads) == set(params)
    for i in range(n):
        loss = module(x[i : i + 1], None if y is None else y[i : i + 1])["loss"].sum()
        assert float(metrics["loss"][i]) == pytest.approx(float(loss), rel=1e-10)
        one = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        for (k, p), g in zip(params.items(), one, strict=True):
            g = torch.zeros_like(p) if g is None else g
            torch.testing.assert_close(grads[k][i], g, rtol=1e-8, atol=1e-10, msg=k)
    # The examples' gradients differ: not one batch gradient repeated.
    flat = torch.cat([g.reshape(n, -1) for g in grads.values()], 1)
    assert (flat[0] - flat[1]).abs().max() > 1e-6


def _glow_objective(conditional=False):
    torch.manual_seed(0)
    opts = {"levels": 2, "depth": 1, "hidden": 8}
    if conditional:
        opts["context_features"] = 10
    flow = build_model("glow", (1, 8, 8), **opts)
    return DensityObjective(flow, DataSpec("image", (1, 8, 8), 17, 10), conditional=conditional)


def test_clipping_bounds_every_per_sample_gradient():
    obj = _glow_objective(conditional=True)
    skip_data_dependent_init(obj)
    opt = torch.optim.SGD(obj.parameters(), lr=0.1)
    clip = 0.05
    dp = DPSGD(obj, opt, epsilon=8.0, delta=1e-5, max_grad_norm=clip, n_train=1000,
               batch_size=32, steps=10)
    summed = []
    add_noise = dp._dp.add_noise

    def spy():
        summed.append(torch.linalg.vector_norm(
            torch.stack([p.summed_grad.norm() for p in dp.params])))
        add_noise()

    dp._dp.add_noise = spy
    x = torch.randint(0, 17, (12, 1, 8, 8), dtype=torch.uint8)
    y = torch.randint(0, 10, (12,))
    raw, _ = per_sample_gradients(obj, x, y)
    raw_norms = torch.cat([g.reshape(12, -1) for g in raw.values()], 1).norm(dim=1)
    assert (raw_norms > 10 * clip).all()  # so the bound has work to do
    for i in range(12):  # one example per step: the summed clipped gradient is that example's
        dp.gradients(x[i : i + 1], y[i : i + 1], ["loss", "bpd"])
    assert len(summed) == 12 and max(float(s) for s in summed) <= clip * (1 + 1e-5)
    assert min(float(s) for s in summed) >= clip * 0.99  # clipped down to the bound, not zero
    # A whole batch sums at most B clipped gradients, plus noise of std sigma * C per entry.
    dp.gradients(x, y, ["loss", "bpd"])
    assert float(summed[-1]) <= 12 * clip * (1 + 1e-5)
    for p in dp.params:
        assert p.grad is not None and torch.isfinite(p.grad).all()
        assert getattr(p, "grad_sample", None) is None and getattr(p, "summed_grad", None) is None


def test_poisson_batches_have_the_expected_size():
    obj = _glow_objective()
    dp = DPSGD(obj, torch.optim.SGD(obj.parameters(), lr=0.1), epsilon=3.0, delta=1e-5,
               max_grad_norm=1.0, n_train=2_000, batch_size=100, steps=50)
    sizes = torch.tensor([len(dp.batch_indices(s, seed=0)) for s in range(200)]).double()
    assert abs(float(sizes.mean()) - 100) < 3 and float(sizes.std()) > 3  # Binomial(2000, .05)
    assert torch.equal(dp.batch_indices(7, 0), dp.batch_indices(7, 0))
    assert not torch.equal(dp.batch_indices(7, 0), dp.batch_indices(8, 0))


def test_dp_train_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "dp"
    argv = ["train", "--model", "glow", "--levels", "2", "--depth", "1", "--hidden", "8",
            "--steps", "20", "--batch-size", "64", "--no-progress", "--conditional",
            "--dp-epsilon", "2", "--dp-delta", "1e-5", "--dp-max-grad-norm", "0.5",
            "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "DP-SGD: noise multiplier" in text and "-DP for the training split" in text
    assert "the first ActNorm from a Gaussian-mechanism estimate" in text
    recs = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    pv = next(r for r in recs if r.get("event") == "privacy")
    assert 1.9 <= pv["epsilon_spent"] <= 2.0 and pv["steps"] == 20
    assert pv["max_grad_norm"] == 0.5 and pv["sample_rate"] == pytest.approx(64 / 1294)
    meta = json.loads((out / "checkpoints" / "best.json").read_text())
    assert meta["privacy"]["epsilon_spent"] == pv["epsilon_spent"] and meta["step"] == 20
    assert pv["prior_mechanisms"] == [[10.0, 1.0, 1]]  # the first ActNorm's private init
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    assert "privacy: DP-SGD, (" in capsys.readouterr().out
    assert main(["sample", str(out), "--label", "3", "-n", "4", "-o", str(tmp_path / "s.png")]) == 0


def test_dp_user_mistakes_are_one_line_errors(tmp_path, capsys):
    base = ["train", "--model", "glow", "--no-progress", "--batch-size", "32"]
    assert_one_line_errors({
        "delta without epsilon": [*base, "--steps", "2", "--dp-delta", "1e-5",
                                  "--out", str(tmp_path / "a")],
        "time budget only": [*base, "--max-time", "5", "--dp-epsilon", "1",
                             "--out", str(tmp_path / "b")],
        "another task": ["train", "--task", "vae", "--steps", "2", "--dp-epsilon", "1",
                         "--no-progress", "--out", str(tmp_path / "c")],
        "amp": [*base, "--steps", "2", "--amp", "--dp-epsilon", "1",
                "--out", str(tmp_path / "d")],
        "delta out of range": [*base, "--steps", "2", "--dp-epsilon", "1", "--dp-delta", "2",
                               "--out", str(tmp_path / "e")],
    }, capsys)
    run = tmp_path / "r"
    assert main([*base, "--steps", "3", "--levels", "1", "--depth", "1", "--hidden", "8",
                 "--dp-epsilon", "4", "--out", str(run)]) == 0
    assert_one_line_errors({"longer DP budget on resume": ["train", "--resume", str(run),
                                                           "--steps", "6"]}, capsys)


def _first_actnorms(dp):
    cfg = TrainConfig(data="digits", model="glow", steps=2, batch_size=32,
                      model_options={"levels": 2, "depth": 1, "hidden": 8},
                      dp_epsilon=5.0 if dp else None)
    cfg.validate()
    torch.manual_seed(0)
    train = load_split(cfg, "train")
    obj = DensityObjective(build_model("glow", train.shape, levels=2, depth=1, hidden=8),
                           DataSpec.from_info(train.info()))
    trainer = Trainer(cfg, obj, train, None, progress=False)
    norms = [m for m in obj.modules() if hasattr(m, "mark_initialized")]
    assert len(norms) >= 2 and all(bool(m.initialized) for m in norms)
    return trainer, [(m.log_scale.detach().clone(), m.bias.detach().clone()) for m in norms]


def test_dp_training_initialises_actnorm_only_through_the_accounted_mechanism():
    """ActNorm's ordinary init reads private data outside the accounting. A DP run sets the
    first ActNorm from a Gaussian-mechanism estimate of its input statistics (close to the
    ordinary init's values), the others stay at the identity, and the init is in the budget."""
    _, plain = _first_actnorms(dp=False)
    trainer, private = _first_actnorms(dp=True)
    assert all(float(s.abs().max() + b.abs().max()) > 1e-3 for s, b in plain)
    assert all(float(s.abs().max() + b.abs().max()) == 0.0 for s, b in private[1:])
    (s_dp, b_dp), (s_plain, b_plain) = private[0], plain[0]
    assert float((s_dp - s_plain).abs().max()) < 0.15 and float((b_dp - b_plain).abs().max()) < 0.3
    assert float((s_dp - s_plain).abs().max()) > 0  # noised, not the exact statistics
    budget = trainer.dp.budget
    assert budget.prior == ((10.0, 1.0, 1),)  # digits: 1,294 examples, all of them sampled
    assert budget.epsilon() == pytest.approx(spent_epsilon(
        budget.noise_multiplier, budget.sample_rate, budget.steps, budget.delta, "rdp",
        budget.prior))
    assert budget.epsilon() > spent_epsilon(budget.noise_multiplier, budget.sample_rate,
                                            budget.steps, budget.delta)
    assert 4.9 <= budget.epsilon() <= 5.0


def test_composed_history_matches_opacus_stepwise_and_calibrates():
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.step(noise_multiplier=10.0, sample_rate=0.2)
    for _ in range(300):
        acc.step(noise_multiplier=0.8, sample_rate=0.01)
    theirs = acc.get_epsilon(1e-5, alphas=privacy.accounting.RDP_ORDERS)
    ours = spent_epsilon(0.8, 0.01, 300, 1e-5, "rdp", [(10.0, 0.2, 1)])
    assert ours == pytest.approx(theirs, rel=1e-9)
    sigma = noise_multiplier_for(3.0, 1e-5, 0.01, 300, "rdp", [(10.0, 0.2, 1)])
    assert 2.99 <= spent_epsilon(sigma, 0.01, 300, 1e-5, "rdp", [(10.0, 0.2, 1)]) <= 3.0
    with pytest.raises(ValueError, match="already spend"):
        noise_multiplier_for(0.01, 1e-5, 0.01, 300, "rdp", [(0.5, 1.0, 5)])


def test_value_checks_pause_only_inside_function_transforms():
    """Range and finiteness checks read values on the host, which vmap cannot: they pause
    inside torch.func transforms, and hold everywhere else."""
    from invertible.core import InvalidInputError, inside_function_transform, value_checks_active

    assert value_checks_active() and not inside_function_transform()
    seen = torch.func.vmap(lambda v: v * 0 + float(inside_function_transform()))(torch.zeros(3))
    assert torch.equal(seen, torch.ones(3))
    obj = _glow_objective()
    skip_data_dependent_init(obj)
    bad = torch.full((2, 1, 8, 8), 40, dtype=torch.uint8)  # levels beyond n_bins = 17
    with pytest.raises(InvalidInputError, match="levels must lie in"):
        obj(bad)


def test_without_noise_or_clipping_the_dp_gradient_is_the_batch_gradient():
    """With the noise switched off and a bound no gradient reaches, DP-SGD's gradient is the
    ordinary mean gradient of the batch: the per-sample path adds nothing of its own."""
    name, shape, opts, classes = CASES["glow-conditional"]
    torch.manual_seed(0)
    module = _NegLogLik(build_model(name, shape, **opts).double(), classes)
    x = (torch.randint(0, 17, (16, *shape)).double() + 0.5) / 17
    y = torch.randint(0, classes, (16,))
    with torch.no_grad():
        module(x, y)
    skip_data_dependent_init(module)
    dp = DPSGD(module, torch.optim.SGD(module.parameters(), lr=0.1), epsilon=8.0, delta=1e-5,
               max_grad_norm=1e9, n_train=160, batch_size=16, steps=10)
    dp._dp.noise_multiplier = 0.0
    dp.gradients(x, y, ["loss"])
    ours = {k: p.grad.clone() for k, p in module.named_parameters()}
    module.zero_grad()
    module(x, y)["loss"].mean().backward()
    for k, p in module.named_parameters():
        torch.testing.assert_close(ours[k], p.grad, rtol=1e-9, atol=1e-12, msg=k)


def test_a_non_finite_example_contributes_nothing_and_is_counted():
    name, shape, opts, classes = CASES["glow"]
    torch.manual_seed(0)
    module = _NegLogLik(build_model(name, shape, **opts).double(), classes)
    x = (torch.randint(0, 17, (6, *shape)).double() + 0.5) / 17
    with torch.no_grad():
        module(x)
    skip_data_dependent_init(module)
    x[2, 0, 0, 0] = float("nan")  # a row that the split's validation would have refused
    dp = DPSGD(module, torch.optim.SGD(module.parameters(), lr=0.1), epsilon=8.0, delta=1e-5,
               max_grad_norm=1.0, n_train=60, batch_size=6, steps=10)
    out = dp.gradients(x, None, ["loss"])
    assert dp.nonfinite_examples == 1 and out["loss"].shape == (5,)
    assert torch.isfinite(out["loss"]).all()
    assert all(torch.isfinite(p.grad).all() for p in module.parameters())
