"""The classifier ladder (Table 1), FlowGMM, and the classify task's command line."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import invertible as inv
from invertible.cli.main import main
from invertible.models.classifier import LADDER_STEPS
from invertible.training.objectives import DataSpec
from one_line_errors import assert_one_line_errors

DIGITS = DataSpec("image", (1, 8, 8), 17, 10)


@pytest.mark.parametrize("step", LADDER_STEPS)
def test_every_step_builds_and_trains(step):
    torch.manual_seed(0)
    model = inv.build_convnet((1, 28, 28), 10, step)
    assert model.invertible == (step in ("checkerboard", "nn", "avgpool"))
    x, y = torch.rand(32, 1, 28, 28), torch.randint(10, (32,))
    x[:16] *= 0.3  # two easy classes, so a few steps must lower the loss
    y[:16], y[16:] = 0, 1
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    model.train()
    losses = []
    for _ in range(8):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    assert model.features(x).shape == (32, 64, 4, 4)  # 28 padded to 32, then 4C x H/8 x W/8


def test_widths_and_parameter_counts():
    counts = {s: sum(p.numel() for p in inv.build_convnet((1, 28, 28), 10, s).parameters())
              for s in LADDER_STEPS}
    # Rows 1-3 widen C -> 4C after max pooling; rows 4-6 keep C x H x W (square convs).
    assert counts["base"] == counts["circular"] == counts["sneaky"]
    assert counts["checkerboard"] == counts["nn"] == counts["avgpool"] > counts["base"]
    mean_head = inv.build_convnet((1, 28, 28), 10, "avgpool", head="mean")
    assert mean_head.head.in_features == 64


@pytest.mark.parametrize("step", ["checkerboard", "nn", "avgpool"])
def test_invertible_steps_reconstruct_the_input_exactly(step):
    torch.manual_seed(1)
    model = inv.build_convnet((1, 28, 28), 10, step).double()
    x = torch.rand(6, 1, 28, 28, dtype=torch.float64)
    model.train()
    model(x)  # ActNorm's data init
    model.eval()
    back = model.invert(model.features(x))
    assert back.shape == x.shape
    assert ((back - x).norm() / x.norm()).item() < 1e-10
    # The padding comes back as padding: the body is a bijection on the padded image.
    padded = F.pad(x, model.pad)
    assert torch.allclose(model.body.inverse(model.body(padded)[0])[0], padded, atol=1e-10)


@pytest.mark.parametrize("step", ["base", "circular", "sneaky"])
def test_non_invertible_steps_refuse_to_invert(step):
    model = inv.build_convnet((1, 8, 8), 10, step)
    with pytest.raises(inv.ModelError, match="not invertible"):
        model.invert(torch.zeros(1, *model.feature_shape))


@pytest.mark.parametrize("options, match", [
    ({"step": "maxpool"}, "step must be one of"),
    ({"kernel_size": 4}, "odd"),
    ({"slope": 0}, "slope"),
    ({"head": "sum"}, "head"),
    ({"sv_bound": 1}, "sv_bound"),
    ({"width": 3}, "no option 'width'"),
])
def test_bad_options_are_model_errors(options, match):
    with pytest.raises(inv.ModelError, match=match):
        inv.build_convnet((1, 28, 28), 10, **options)


# -- FlowGMM ----------------------------------------------------------------------------------
def test_class_posteriors_and_mixture_density():
    torch.manual_seed(0)
    prior = inv.ClassGaussianMixture((2, 3, 3), 4, scale=2.0)
    z = torch.randn(7, 2, 3, 3, dtype=torch.float64) * 3
    joint = prior.class_log_probs(z)
    flat = z.reshape(7, -1)
    mu = prior.means.reshape(4, -1).double()
    direct = torch.stack([torch.distributions.Normal(mu[k], 1.0).log_prob(flat).sum(1)
                          for k in range(4)], dim=1) - math.log(4)
    assert torch.allclose(joint, direct, atol=1e-9)
    posterior = torch.softmax(joint, dim=1)
    assert torch.allclose(posterior.sum(1), torch.ones(7, dtype=torch.float64))
    assert torch.allclose(prior.log_prob(z), torch.logsumexp(direct, dim=1), atol=1e-9)
    with pytest.raises(inv.InvalidInputError, match="labels"):
        prior.sample(3, labels=torch.tensor([0, 1, 4]))


# Glow with alpha = 0: the logit's inverse lands strictly inside (0, 1); the i-ConvNet
# without its logit takes any real image. Either way the samples can be encoded again.
@pytest.mark.parametrize("make", [
    lambda: inv.build_glow((1, 8, 8), levels=2, depth=1, hidden=8, alpha=0.0),
    lambda: inv.build_iconvnet((1, 8, 8), depth=1, logit_alpha=None),
], ids=["glow", "iconvnet"])
def test_flowgmm_samples_come_from_the_requested_class(make):
    torch.manual_seed(0)
    flow = make().double()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.02 * torch.randn_like(p))
    prior = inv.ClassGaussianMixture((1, 8, 8), 10, scale=1.0, seed=3).double()
    gmm = inv.FlowGMMObjective(inv.Flow(flow.bijection, prior), DIGITS).double().eval()
    n, label = 4000, 7
    z = prior.sample(n, labels=torch.full((n,), label))
    x, _ = flow.bijection.inverse(z)
    z_back, _ = flow.bijection(x)
    # The latent of a class-7 sample is centred on mu_7: a mean over n draws of unit-variance
    # noise is within 5 / sqrt(n) of it in every coordinate.
    mean = z_back.mean(0)
    assert (mean - prior.means[label]).abs().max().item() < 5 / math.sqrt(n)
    posterior = torch.softmax(prior.class_log_probs(z_back), dim=1)
    assert torch.allclose(posterior.sum(1), torch.ones(n, dtype=torch.float64))
    assert (posterior.argmax(1) == label).double().mean().item() > 0.99
    levels = gmm.sample_class(torch.full((5,), label))
    assert levels.shape == (5, 1, 8, 8) and levels.dtype == torch.uint8


def test_flowgmm_metrics_are_consistent():
    torch.manual_seed(0)
    flow = inv.build_model("glow", (1, 8, 8), levels=2, depth=1, hidden=8)
    prior = inv.ClassGaussianMixture((1, 8, 8), 10)
    gmm = inv.FlowGMMObjective(inv.Flow(flow.bijection, prior), DIGITS)
    x, y = torch.randint(0, 17, (12, 1, 8, 8), dtype=torch.uint8), torch.randint(10, (12,))
    torch.manual_seed(5)
    out = gmm(x, y)
    # p(x, y) <= p(x): the pair costs at least as many bits as the image.
    assert (out["pair_bpd"] >= out["bpd"] - 1e-6).all()
    assert torch.equal(out["loss"], out["pair_bpd"])  # w_class = 0: FlowGMM as published
    hybrid = inv.FlowGMMObjective(gmm.flow, DIGITS, w_class=10.0)
    torch.manual_seed(5)
    more = hybrid(x, y)
    assert torch.allclose(more["loss"], out["pair_bpd"] + 10 * (out["pair_bpd"] - out["bpd"]))
    torch.manual_seed(5)
    joint, _ = gmm._joint(x)
    assert torch.equal(out["error"], (joint.argmax(1) != y).float())
    with pytest.raises(inv.TaskError, match="labelled"):
        gmm(x, None)


# -- the command line --------------------------------------------------------------------------
def _train(out, *extra):
    argv = ["train", "--task", "classify", "--steps", "40", "--batch-size", "32", "--warmup",
            "5", "--val-every", "20", "--no-progress", "--out", str(out), *extra]
    assert main(argv) == 0


@pytest.fixture(scope="module")
def ladder_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ladder") / "avgpool"
    _train(out, "--model-option", "step=avgpool", "--lr", "3e-3")
    return out


def test_cli_train_evaluate_invert(ladder_run, tmp_path, capsys):
    assert (ladder_run / "inversion.png").is_file()
    config = json.loads((ladder_run / "config.json").read_text())
    assert config["train"]["model"] == "convnet"  # the classify task's default model
    capsys.readouterr()
    assert main(["evaluate", str(ladder_run), "--json"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy:" in out and "reconstruction from the features" in out
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["error"] < 0.5  # 10 classes: chance is 0.9 (40 steps reach ~0.1-0.3)
    assert figures["reconstruction_max"] < 1e-4
    png = tmp_path / "inv.png"
    assert main(["invert", str(ladder_run), "-n", "4", "--all", "-o", str(png)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert png.is_file() and "over 359 test images" in lines[0]
    worst = float(lines[0].rsplit("max ", 1)[1])
    assert worst == pytest.approx(figures["reconstruction_max"], rel=1e-2)  # printed to 3 digits
    assert main(["invert", str(ladder_run), "--all", "--float64", "-o", str(png),
                 "--force"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert "(float64)" in line and float(line.rsplit("max ", 1)[1]) < 1e-10
    assert main(["invert", str(ladder_run), "-o", str(png)]) == 2  # no overwrite
    assert main(["invert", str(ladder_run), "-o", str(png), "--force"]) == 0


def test_cli_flowgmm_run(tmp_path, capsys):
    out = tmp_path / "gmm"
    _train(out, "--model", "glow", "--model-option", "levels=2", "--model-option", "depth=1",
           "--model-option", "hidden=16", "--task-option", "mean_scale=2")
    assert (out / "samples" / "final.png").is_file()
    capsys.readouterr()
    assert main(["evaluate", str(out), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"bpd", "pair_bpd", "loss", "error", "round_trip_max"} <= set(figures)
    assert figures["pair_bpd"] >= figures["bpd"] - 1e-6
    npy = tmp_path / "threes.npy"
    assert main(["sample", str(out), "--label", "3", "-n", "6", "--seed", "0",
                 "-o", str(npy)]) == 0
    capsys.readouterr()
    assert main(["sample", str(out), "--label", "10", "-o", str(tmp_path / "x.npy")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "class indices in [0, 9]" in err[0]
    run = inv.open_run(out)
    x = np.load(npy)
    assert x.shape == (6, 1, 8, 8)
    assert main(["invert", str(out), "-o", str(tmp_path / "i.png")]) == 0
    # A Bayes classifier in latent space: posteriors are distributions over the 10 digits.
    post = run.objective.class_posterior(torch.from_numpy(x))
    assert torch.allclose(post.sum(1), torch.ones(6), atol=1e-5)


def test_bad_requests_get_one_line(ladder_run, tmp_path, capsys):
    base = tmp_path / "base"
    _train(base, "--model-option", "step=base", "--steps", "2")
    density = tmp_path / "density"
    assert main(["train", "--model", "elementwise", "--steps", "2", "--batch-size", "32",
                 "--no-progress", "--out", str(density)]) == 0
    cases = {
        "invert a non-invertible step": ["invert", str(base), "-o", str(tmp_path / "a.png")],
        "invert a density run": ["invert", str(density), "-o", str(tmp_path / "b.png")],
        "sample a classifier": ["sample", str(ladder_run), "-o", str(tmp_path / "c.png")],
        "label for a density run": ["sample", str(density), "--label", "1",
                                    "-o", str(tmp_path / "d.png")],
        "convnet for density": ["train", "--model", "convnet", "--steps", "1",
                                "--out", str(tmp_path / "e")],
        "unknown ladder step": ["train", "--task", "classify", "--model-option", "step=x",
                                "--steps", "1", "--out", str(tmp_path / "f")],
        "task option for convnet": ["train", "--task", "classify", "--task-option", "a=1",
                                    "--steps", "1", "--out", str(tmp_path / "g")],
        "bad mean scale": ["train", "--task", "classify", "--model", "glow", "--task-option",
                           "mean_scale=-1", "--steps", "1", "--out", str(tmp_path / "h")],
        "bad class weight": ["train", "--task", "classify", "--model", "glow", "--task-option",
                             "w_class=-2", "--steps", "1", "--out", str(tmp_path / "j")],
        "unlabelled data": ["train", "--task", "classify", "--data", "moons", "--steps", "1",
                            "--out", str(tmp_path / "i")],
    }
    assert_one_line_errors(cases, capsys)
    assert not list(tmp_path.glob("*.png"))
