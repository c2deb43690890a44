"""The invertible autoencoder: exact at full size, code order, fills, loss terms, CLI."""

import json

import numpy as np
import pytest
import torch

import invertible as inv
from invertible.cli.main import main
from invertible.models.autoencoder import latent_order
from invertible.training.objectives.autoencoder import code_sizes
from one_line_errors import assert_one_line_errors

IMAGE_MODELS = {
    "glow": {"levels": 2, "depth": 1, "hidden": 8},
    "realnvp": {"levels": 2, "depth": 2, "hidden": 8},
    "iconvnet": {},
    "iconvnet-hybrid-haar": {"hybrid": True, "downsample": "haar"},
    "elementwise": {},
}


def _flow(name, shape=(1, 8, 8)):
    torch.manual_seed(0)
    flow = inv.build_model(name.split("-")[0], shape, **IMAGE_MODELS.get(name, {})).double()
    with torch.no_grad():  # off the identity init of zero-initialised couplings
        for p in flow.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return flow.eval()


@pytest.mark.parametrize("name", sorted(IMAGE_MODELS))
@pytest.mark.parametrize("head", [False, True])
def test_lossless_at_full_code_size(name, head):
    flow = _flow(name)
    if head:
        flow, pca = inv.with_pca_head(flow)
        pca.fit_pca_(torch.rand(200, 1, 8, 8, dtype=torch.float64))
    ae = inv.InvertibleAutoencoder(flow, 64)
    x = torch.rand(5, 1, 8, 8, dtype=torch.float64)
    code = ae.encode(x)
    assert code.shape == (5, 64)
    assert (ae.decode(code) - x).abs().max() <= 1e-10


def test_lossless_for_vector_flows():
    torch.manual_seed(0)
    flow = inv.build_model("maf", (6,)).double()
    ae = inv.InvertibleAutoencoder(flow, 6)
    x = torch.randn(4, 6, dtype=torch.float64)
    assert torch.equal(ae.order, torch.arange(6))
    assert (ae.decode(ae.encode(x)) - x).abs().max() <= 1e-10
    assert ae.encode(x, 2).shape == (4, 2) and ae.decode(ae.encode(x, 2)).shape == (4, 6)


def test_coarse_scales_come_first():
    flow = inv.build_model("glow", (1, 16, 16), levels=3, depth=1, hidden=8)
    order = latent_order(flow.bijection, (1, 16, 16))
    assert torch.equal(torch.sort(order).values, torch.arange(256))
    # Glow's latent keeps the input layout; the dry run tags each coordinate with the scale
    # that wrote it, and the first 64 ordered ones are those of the innermost (coarsest).
    from invertible.models.autoencoder import _scale_tags

    tags = _scale_tags(flow.bijection, (1, 16, 16)).flatten()
    assert torch.bincount(tags).tolist() == [128, 64, 64]
    assert (tags[order[:64]] == 2).all() and (tags[order[64:128]] == 1).all()
    # Within a scale the first codes spread over the image: 4 codes, 4 quadrants.
    rows, cols = order[:4] // 16, order[:4] % 16
    assert sorted(zip((rows >= 8).tolist(), (cols >= 8).tolist(), strict=True)) == [
        (False, False), (False, True), (True, False), (True, True)]
    # A Haar downsampling mixes coordinates after the factor-out: no scale tags, but still
    # a valid order.
    haar = inv.build_model("iconvnet", (1, 16, 16), downsample="haar")
    assert _scale_tags(haar.bijection, (1, 16, 16)) is None
    assert torch.equal(torch.sort(latent_order(haar.bijection, (1, 16, 16))).values,
                       torch.arange(256))


def test_fills_are_reproducible_and_differ():
    ae = inv.InvertibleAutoencoder(_flow("glow"), 8)
    code = ae.encode(torch.rand(3, 1, 8, 8, dtype=torch.float64))
    zeros = ae.decode(code)
    assert torch.equal(zeros, ae.decode(code, "zeros"))
    torch.manual_seed(5)
    a = ae.decode(code, "sample")
    torch.manual_seed(5)
    b = ae.decode(code, "sample")
    torch.manual_seed(6)
    c = ae.decode(code, "sample")
    assert torch.equal(a, b) and not torch.allclose(a, c) and not torch.allclose(a, zeros)
    # A cold prior (temperature -> 0) approaches the zero fill.
    torch.manual_seed(5)
    cold = ae.decode(code, "sample", temperature=1e-6)
    assert (cold - zeros).abs().max() < 1e-4
    assert ae.sample(4).shape == (4, 1, 8, 8)


def test_pca_head_starts_as_pca():
    from sklearn.decomposition import PCA

    g = torch.Generator().manual_seed(0)
    data = torch.randn(500, 12, generator=g, dtype=torch.float64) @ torch.randn(
        12, 12, generator=g, dtype=torch.float64)
    head = inv.PCAHead((12,)).double()
    variances = head.fit_pca_(data)
    pca = PCA(12).fit(data.numpy())
    np.testing.assert_allclose(variances.numpy(), pca.explained_variance_, rtol=1e-8)
    ae = inv.InvertibleAutoencoder(head, 3, data_shape=(12,), order=torch.arange(12))
    ours = ae.encode(data).detach().numpy()
    theirs = pca.transform(data.numpy())[:, :3]
    np.testing.assert_allclose(np.abs(ours), np.abs(theirs), atol=1e-8)  # up to signs
    rec = pca.inverse_transform(pca.transform(data.numpy()) * (np.arange(12) < 3))
    np.testing.assert_allclose(ae.decode(ae.encode(data)).detach().numpy(), rec, atol=1e-8)


def _objective(k, name="glow", **opts):
    cfg = inv.TrainConfig(task="autoencoder", task_options={"code_size": k, **opts},
                          model=name.split("-")[0], model_options=IMAGE_MODELS[name])
    torch.manual_seed(0)
    return inv.build_objective(cfg, inv.DataSpec("image", (1, 8, 8), 17)).double()


@pytest.mark.parametrize("name", ["glow", "iconvnet"])
def test_loss_terms_vanish_where_they_must(name):
    digits = inv.load_split(inv.TrainConfig(), "train").x
    levels = digits[:6]
    full = _objective(64, name).eval()
    terms = full(levels)
    # An untrained but exact bijection at k = D loses nothing in either direction.
    assert terms["mse"].abs().max() < 1e-20 and terms["code_mse"].abs().max() < 1e-18
    assert torch.equal(terms["tail"], torch.zeros(6, dtype=torch.float64))
    short = _objective(16, name)
    short.init_from_data(digits[:500])
    terms = short.eval()(levels)
    assert (terms["mse"] > 1e-8).all() and (terms["tail"] > 0).all()
    # The code-space term by hand: decode, clip to an image, re-encode, compare the codes.
    with torch.no_grad():
        y = short.center(levels)
        code = short.ae.encode(y, 16)
        again = short.ae.encode(short.ae.decode(code).clamp(0, 1), 16)
    torch.testing.assert_close(terms["code_mse"].detach(), (again - code).pow(2).mean(1))
    w = short.weights
    expected = (w["mse"] * terms["mse"] + w["code_mse"] * terms["code_mse"]
                + w["tail"] * terms["tail"] + w["bpd"] * terms["bpd"])
    torch.testing.assert_close(terms["loss"], expected)


def test_nested_training_draws_prefix_sizes():
    assert code_sizes(16) == [1, 2, 4, 8, 16] and code_sizes(12) == [1, 2, 4, 8, 12]
    assert code_sizes(1) == [1]
    obj = _objective(16).train()
    torch.manual_seed(0)
    k = obj._sizes(4000, torch.device("cpu"))
    share = torch.bincount(k, minlength=17).double() / 4000
    assert share[16] == pytest.approx(0.5 + 0.1, abs=0.03)  # half trained k, half nested
    assert all(share[s] == pytest.approx(0.1, abs=0.02) for s in (1, 2, 4, 8))
    assert share.sum() == pytest.approx(1.0)
    assert torch.equal(obj.eval()._sizes(5, torch.device("cpu")), torch.full((5,), 16))


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ae") / "run"
    assert main(["train", "--task", "autoencoder", "--code-size", "8", "--model", "glow",
                 "--model-option", "levels=2", "--model-option", "depth=2",
                 "--model-option", "hidden=16", "--steps", "60", "--batch-size", "32",
                 "--warmup", "5", "--val-every", "30", "--no-progress",
                 "--out", str(out)]) == 0
    return out


def test_cli_train_reduce_reconstruct_sample(ae_run, tmp_path, capsys):
    for name in ("reconstructions/final.png", "samples/final.png", "rate_distortion.png"):
        assert (ae_run / name).is_file(), name
    recs = [json.loads(x) for x in (ae_run / "metrics.jsonl").read_text().splitlines()]
    logged = set().union(*recs)
    assert {"train_mse", "train_code_mse", "train_tail", "train_bpd", "val_mse"} <= logged
    mse = [r["val_mse"] for r in recs if "val_mse" in r]
    capsys.readouterr()
    assert main(["evaluate", str(ae_run), "--json"]) == 0
    out = capsys.readouterr().out
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["mse@64"] < 1e-10 and figures["max_abs@64"] < 1e-5  # lossless at k = D
    assert figures["mse@8"] == pytest.approx(figures["mse"], rel=1e-6)
    assert figures["mse@1"] > figures["mse@4"] > figures["mse@8"] > figures["mse@64"]
    assert min(mse) < 0.05  # digits at k=8 after 60 steps (PCA from the start: ~0.022)

    codes = tmp_path / "codes.npz"
    assert main(["reduce", str(ae_run), "--split", "test", "-n", "20", "-o", str(codes)]) == 0
    with np.load(codes) as z:
        c, labels = z["codes"], z["labels"]
    from invertible.data import load_dataset

    test = load_dataset("digits", split="test")
    assert c.shape == (20, 8) and np.array_equal(labels, test.labels[:20].numpy())
    npy = tmp_path / "codes.npy"
    assert main(["reduce", str(ae_run), "-k", "4", "-n", "20", "-o", str(npy)]) == 0
    assert np.allclose(np.load(npy), c[:, :4], atol=1e-6)  # codes are prefixes
    assert np.array_equal(np.load(tmp_path / "codes.labels.npy"), labels)

    rec = tmp_path / "rec.npy"
    assert main(["reconstruct", str(ae_run), str(codes), "-o", str(rec)]) == 0
    run = inv.open_run(ae_run)
    with torch.no_grad():
        expected = run.objective.to_levels(
            run.objective.ae.decode(torch.from_numpy(c).to(run.objective.dtype))).numpy()
    assert np.array_equal(np.load(rec), expected)
    png = tmp_path / "rec.png"
    assert main(["reconstruct", str(ae_run), str(codes), "--fill", "sample", "--seed", "1",
                 "-o", str(png)]) == 0
    assert main(["sample", str(ae_run), "-n", "9", "-o", str(tmp_path / "s.png")]) == 0
    # The flow commands work on an autoencoder run too: encode/decode at k = D is exact.
    z = tmp_path / "z.npy"
    assert main(["encode", str(ae_run), "--split", "test", "-n", "10", "-o", str(z)]) == 0
    back = tmp_path / "x.npy"
    assert main(["decode", str(ae_run), str(z), "-o", str(back)]) == 0
    assert np.array_equal(np.load(back), test.images[:10].numpy())


def test_bad_inputs_get_one_line(ae_run, tmp_path, capsys):
    np.save(tmp_path / "wide.npy", np.zeros((2, 65), np.float32))
    np.save(tmp_path / "ints.npy", np.zeros((2, 8), np.int64))
    np.save(tmp_path / "nan.npy", np.full((2, 8), np.nan, np.float32))
    np.savez(tmp_path / "nocodes.npz", other=np.zeros(3))
    density = tmp_path / "density"
    assert main(["train", "--model", "elementwise", "--steps", "2", "--batch-size", "32",
                 "--no-progress", "--out", str(density)]) == 0
    cases = {
        "code too wide": ["reconstruct", str(ae_run), str(tmp_path / "wide.npy"),
                          "-o", str(tmp_path / "a.png")],
        "integer codes": ["reconstruct", str(ae_run), str(tmp_path / "ints.npy"),
                          "-o", str(tmp_path / "a.png")],
        "non-finite codes": ["reconstruct", str(ae_run), str(tmp_path / "nan.npy"),
                             "-o", str(tmp_path / "a.png")],
        "no codes in npz": ["reconstruct", str(ae_run), str(tmp_path / "nocodes.npz"),
                            "-o", str(tmp_path / "a.png")],
        "k above D": ["train", "--task", "autoencoder", "--code-size", "65", "--steps", "1",
                      "--out", str(tmp_path / "b")],
        "k zero": ["train", "--task", "autoencoder", "--code-size", "0", "--steps", "1",
                   "--out", str(tmp_path / "c")],
        "no code size": ["train", "--task", "autoencoder", "--steps", "1",
                         "--out", str(tmp_path / "d")],
        "code size for density": ["train", "--code-size", "4", "--steps", "1",
                                  "--out", str(tmp_path / "e")],
        "unknown task option": ["train", "--task", "autoencoder", "--code-size", "4",
                                "--task-option", "w_foo=1", "--steps", "1",
                                "--out", str(tmp_path / "f")],
        "reduce k above D": ["reduce", str(ae_run), "-k", "99", "-o", str(tmp_path / "g.npy")],
        "reduce a density run": ["reduce", str(density), "-o", str(tmp_path / "h.npy")],
        "reconstruct with a density run": ["reconstruct", str(density),
                                           str(tmp_path / "ints.npy"),
                                           "-o", str(tmp_path / "i.png")],
    }
    assert_one_line_errors(cases, capsys)
    assert not list(tmp_path.glob("*.png"))
