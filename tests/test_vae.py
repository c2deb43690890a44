"""The Flow-VAE: posterior log-dets, the ELBO by hand, the IWAE bound, the likelihoods, the
objective's warm-up and free bits, and the CLI end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch.autograd.functional import jacobian

from invertible.cli.main import main
from invertible.models.likelihoods import DiscretizedLogistic
from invertible.models.vae import VAE, build_posterior_flow
from invertible.training.objectives import DataSpec, VAEObjective
from one_line_errors import assert_one_line_errors

pytestmark = pytest.mark.usefixtures("one_thread")


def _perturb(module: torch.nn.Module, scale: float = 0.3) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))


@pytest.mark.parametrize("kind", ["planar", "iaf", "coupling"])
def test_posterior_logdet_matches_autograd_float64(kind):
    torch.manual_seed(0)
    latent, ctx = 5, 3
    flow = build_posterior_flow(kind, latent, ctx, steps=3, hidden=16).double()
    _perturb(flow)
    z0 = torch.randn(4, latent, dtype=torch.float64)
    h = torch.randn(4, ctx, dtype=torch.float64)
    z, ld = flow(z0, context=h)
    for i in range(4):
        jac = jacobian(lambda r, c=h[i : i + 1]: flow(r[None], context=c)[0][0], z0[i])
        assert ld[i].item() == pytest.approx(torch.linalg.slogdet(jac)[1].item(), abs=1e-9)
    # The context is read: another h gives another z.
    assert not torch.allclose(flow(z0, context=h + 1)[0], z)
    back, ld_inv = flow.inverse(z, context=h)
    assert (back - z0).abs().max() < 1e-10
    torch.testing.assert_close(ld_inv, -ld, rtol=1e-10, atol=1e-10)


def _tiny_vae(posterior: str = "diagonal", likelihood: str = "bernoulli") -> VAE:
    torch.manual_seed(1)
    vae = VAE((1, 4, 4), latent=2, hidden=8, width=2, posterior=posterior, steps=2,
              flow_hidden=8, likelihood=likelihood, n_bins=17).double()
    _perturb(vae, 0.2)
    return vae


def test_elbo_matches_a_hand_computation():
    """One sample of the ELBO, recomputed with torch.distributions from the same noise."""
    from torch.distributions import Bernoulli, Normal

    vae = _tiny_vae()
    x = torch.bernoulli(torch.full((3, 1, 4, 4), 0.4, dtype=torch.float64))
    torch.manual_seed(7)
    log_px, kl = vae.elbo_terms(x)
    torch.manual_seed(7)
    mu, log_sigma, _ = vae.encode(x)
    eps = torch.randn(1, *mu.shape, dtype=torch.float64)[0]
    z = mu + log_sigma.exp() * eps
    q, prior = Normal(mu, log_sigma.exp()), Normal(torch.zeros_like(mu), torch.ones_like(mu))
    want_kl = (q.log_prob(z) - prior.log_prob(z)).sum(1)
    logits = vae.decoder(z)
    want_px = Bernoulli(logits=logits).log_prob(x).sum((1, 2, 3))
    torch.testing.assert_close(kl, want_kl, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(log_px, want_px, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("posterior", ["diagonal", "iaf"])
def test_iwae_bounds_the_elbo_and_rises_with_k(posterior):
    vae = _tiny_vae(posterior)
    x = torch.bernoulli(torch.full((64, 1, 4, 4), 0.3, dtype=torch.float64))
    torch.manual_seed(3)
    draws = [vae.elbo_terms(x) for _ in range(200)]
    elbo = torch.stack([log_px - kl for log_px, kl in draws]).mean(0)
    torch.manual_seed(4)
    # Each bound averaged over repeats, 2000 samples per image per k.
    bounds = {k: torch.stack([vae.iwae(x, k, chunk=100) for _ in range(2000 // k)]).mean().item()
              for k in (1, 10, 100, 1000)}
    # IWAE_1 is the ELBO's estimate; the bound then rises with k, to log p(x) from below.
    assert bounds[1] == pytest.approx(elbo.mean().item(), abs=0.05)
    assert bounds[10] - bounds[1] > 0.05 and bounds[100] > bounds[10]
    # From 100 to 1000 the gain is a few thousandths here, near the estimate's noise.
    assert bounds[1000] > bounds[100] - 0.01


def test_discretized_logistic_sums_to_one_and_matches_the_cdf():
    lik = DiscretizedLogistic(n_bins=8)
    torch.manual_seed(0)
    out = torch.randn(2, 2, 3, 3, dtype=torch.float64)
    out[:, 1] = out[:, 1] - 1.0  # some narrow, some wide scales
    levels = torch.arange(8, dtype=torch.float64)
    per_level = []
    for k in levels:
        x = torch.full((2, 1, 3, 3), k.item(), dtype=torch.float64)
        # log_prob sums pixels; per pixel via a 1-pixel view of every position.
        mu, log_s = out[:, :1], out[:, 1:]
        lp = torch.stack([lik.log_prob(torch.cat([mu[..., i:i+1, j:j+1],
                                                  log_s[..., i:i+1, j:j+1]], 1),
                                       x[..., i:i+1, j:j+1])
                          for i in range(3) for j in range(3)], 1)
        per_level.append(lp)
    probs = torch.stack(per_level).exp()  # (levels, B, pixels)
    torch.testing.assert_close(probs.sum(0), torch.ones_like(probs[0]), rtol=0, atol=1e-12)
    # Level 3 of pixel (0, 0), from the logistic's CDF directly.
    s = out[0, 1, 0, 0].exp()
    y, half = 2 * 3 / 7 - 1, 1 / 7
    cdf = torch.sigmoid
    want = cdf((y + half - out[0, 0, 0, 0]) / s) - cdf((y - half - out[0, 0, 0, 0]) / s)
    assert probs[3, 0, 0].item() == pytest.approx(want.item(), rel=1e-10)


def test_discretized_logistic_is_finite_for_extreme_scales():
    lik = DiscretizedLogistic(256)
    out = torch.zeros(1, 2, 1, 2, dtype=torch.float64)
    out[0, 1, 0, 0], out[0, 1, 0, 1] = -20.0, 30.0  # below the floor, and huge
    lp = lik.log_prob(out, torch.tensor([[[[128.0, 0.0]]]], dtype=torch.float64))
    assert torch.isfinite(lp).all()


def test_warmup_and_free_bits():
    spec = DataSpec("image", (1, 4, 4), 17)
    obj = VAEObjective(_tiny_vae().float(), spec, kl_warmup=4, free_bits=1000.0)
    x = torch.randint(0, 17, (8, 1, 4, 4))
    obj.train()
    betas = []
    for _ in range(6):
        betas.append(obj.beta())
        out = obj(x)
    assert betas == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    # The KL is far below the floor of 1000 nats x 2 dims: the loss carries the floor,
    # and the KL gets no gradient.
    assert torch.allclose(out["loss"], out["rec"] + 2000.0)
    obj.eval()
    out = obj(x)
    torch.testing.assert_close(out["loss"], out["rec"] + out["kl"])


def test_logistic_objective_reports_bits_per_dim():
    spec = DataSpec("image", (1, 4, 4), 17)
    obj = VAEObjective(_tiny_vae(likelihood="logistic").float(), spec).eval()
    out = obj(torch.randint(0, 17, (5, 1, 4, 4)))
    torch.testing.assert_close(out["bpd"], out["nelbo"] / (16 * math.log(2)))


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("vae") / "run"
    argv = ["train", "--task", "vae", "--data", "digits", "--steps", "30", "--batch-size",
            "32", "--model-option", "posterior=iaf", "--model-option", "latent=4",
            "--model-option", "hidden=32", "--model-option", "steps=2",
            "--task-option", "kl_warmup=10", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    return out


def test_cli_train_evaluate_sample_reduce_reconstruct(vae_run, tmp_path, capsys):
    cfg = json.loads((vae_run / "config.json").read_text())
    assert cfg["train"]["task"] == "vae" and cfg["train"]["model"] == "vae"
    assert (vae_run / "reconstructions" / "final.png").is_file()
    capsys.readouterr()
    assert main(["evaluate", str(vae_run), "--iwae-k", "20", "--limit", "40", "--json"]) == 0
    out = capsys.readouterr().out
    assert "-ELBO" in out and "IWAE, k=20" in out and "active latent units" in out
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["n"] == figures["nll_n"] == 40
    assert figures["nll"] <= figures["nelbo"] + 0.5  # the tighter bound, up to noise
    png = tmp_path / "s.png"
    assert main(["sample", str(vae_run), "-n", "16", "-o", str(png)]) == 0
    assert Image.open(png).size[0] >= 64
    codes = tmp_path / "c.npz"
    assert main(["reduce", str(vae_run), "-n", "10", "-o", str(codes)]) == 0
    with np.load(codes) as z:
        assert z["codes"].shape == (10, 4) and z["labels"].shape == (10,)
    assert main(["reconstruct", str(vae_run), str(codes), "-o", str(tmp_path / "r.npy")]) == 0
    assert np.load(tmp_path / "r.npy").shape == (10, 1, 8, 8)


def test_cli_user_mistakes(vae_run, tmp_path, capsys):
    base = ["train", "--task", "vae", "--data", "digits", "--steps", "1", "--no-progress"]
    assert_one_line_errors({
        "bad posterior": [*base, "--model-option", "posterior=maf",
                          "--out", str(tmp_path / "a")],
        "unknown option": [*base, "--model-option", "depth=3", "--out", str(tmp_path / "b")],
        "other model": [*base, "--model", "glow", "--out", str(tmp_path / "c")],
        "vectors": ["train", "--task", "vae", "--data", "moons", "--steps", "1",
                    "--out", str(tmp_path / "d")],
        "bad free bits": [*base, "--task-option", "free_bits=-1", "--out", str(tmp_path / "e")],
        "zero iwae k": ["evaluate", str(vae_run), "--iwae-k", "0"],
        "class label": ["sample", str(vae_run), "--label", "3", "-o", str(tmp_path / "s.png")],
        "narrow codes": ["reduce", str(vae_run), "-k", "2", "-o", str(tmp_path / "c.npz")],
    }, capsys)
