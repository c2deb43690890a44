"""Encoded-data release (encode --data / decode of a .npz) and ``invertible privacy-report``
on tiny runs, and the helpers that score the attacks (PSNR, SSIM, membership AUC)."""

import json
import math

import numpy as np
import pytest
import torch

from invertible.cli.main import main
from one_line_errors import assert_one_line_errors

TINY = ["--data", "digits", "--model", "elementwise", "--steps", "12", "--batch-size", "32",
        "--val-every", "6", "--no-progress"]
TINY_COND = ["--data", "digits", "--conditional", "--model", "glow", "--model-option",
             "levels=1", "--depth", "1", "--hidden", "8", "--steps", "16", "--warmup", "2",
             "--batch-size", "32", "--val-every", "8", "--no-progress"]
# Small enough for seconds on one core, large enough that n = 1000 pairs clearly beats 10.
SMALL_REPORT = ["--n", "10,1000", "--attack-steps", "150", "--decoder-hidden", "64",
                "--seeds", "1", "--targets", "100", "--mia-n", "100", "--utility-train", "300",
                "--utility-test", "200", "--synthetic-n", "200"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, single_thread):
    out = tmp_path_factory.mktemp("privacy") / "digits"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def cond_run(tmp_path_factory, single_thread):
    out = tmp_path_factory.mktemp("privacy") / "cond"
    assert main(["train", *TINY_COND, "--out", str(out)]) == 0
    return out


def _digits_test_levels():
    from invertible.data import load_dataset

    return load_dataset("digits", split="test").images.numpy()


# -- encoded-data release ---------------------------------------------------------------------
def test_release_round_trip_is_exact_and_bound_to_its_model(run_dir, cond_run, tmp_path,
                                                           capsys):
    codes = tmp_path / "codes.npz"
    assert main(["encode", str(run_dir), "--data", "digits", "-o", str(codes)]) == 0
    with np.load(codes) as f:
        assert set(f.files) == {"model_id", "codes_train", "labels_train", "codes_test",
                                "labels_test"}
        assert f["codes_test"].dtype == np.float32 and f["codes_test"].shape == (359, 64)
        assert f["labels_test"].dtype == np.int64 and len(str(f["model_id"])) == 64
    back = tmp_path / "back.npy"
    assert main(["decode", str(run_dir), str(codes), "--split", "test", "-o", str(back)]) == 0
    assert np.array_equal(np.load(back), _digits_test_levels())
    # Another model's weights are not the key.
    capsys.readouterr()
    assert main(["decode", str(cond_run), str(codes), "-o", str(tmp_path / "x.npy")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "these codes were made by another model" in err[0]
    # No overwrite without --force.
    assert main(["decode", str(run_dir), str(codes), "-o", str(back)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["decode", str(run_dir), str(codes), "-o", str(back), "--force"]) == 0
    assert main(["encode", str(run_dir), "--data", "digits", "-o", str(codes)]) == 2
    assert main(["encode", str(run_dir), "--data", "digits", "--splits", "test", "-n", "5",
                 "-o", str(codes), "--force"]) == 0
    with np.load(codes) as f:
        assert f.files == ["model_id", "codes_test", "labels_test"] or \
            set(f.files) == {"model_id", "codes_test", "labels_test"}
    png = tmp_path / "back.png"
    assert main(["decode", str(run_dir), str(codes), "-o", str(png)]) == 0 and png.is_file()


def test_conditional_release_decodes_given_the_labels(cond_run, tmp_path):
    codes = tmp_path / "c.npz"
    assert main(["encode", str(cond_run), "--data", "digits", "--splits", "test",
                 "-o", str(codes)]) == 0
    back = tmp_path / "b.npy"
    assert main(["decode", str(cond_run), str(codes), "-o", str(back)]) == 0
    assert np.array_equal(np.load(back), _digits_test_levels())


def test_model_id_covers_weights_and_config(run_dir):
    from invertible.privacy.release import model_id
    from invertible.training.run import open_run

    r = open_run(run_dir)
    mid = model_id(r.objective, r.config, r.data)
    assert mid == model_id(open_run(run_dir).objective, r.config, r.data)
    with torch.no_grad():
        next(r.objective.parameters()).view(-1)[0] += 1e-6
    assert model_id(r.objective, r.config, r.data) != mid


# -- the report -------------------------------------------------------------------------------
def test_privacy_report_end_to_end(run_dir, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["privacy-report", str(run_dir), *SMALL_REPORT, "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "model holder" in printed and "AUC" in printed
    for name in ("privacy_report.md", "privacy_report.json", "privacy_report.png"):
        assert (out / name).is_file(), name
    res = json.loads((out / "privacy_report.json").read_text())
    assert res["holder"]["psnr"] == "inf" and res["holder"]["max_abs_error_levels"] == 0
    assert res["holder"]["max_abs_error_model"] < 1e-5
    assert 0.0 <= res["membership"]["auc"] <= 1.0
    for kind in ("mlp", "conv"):
        curve = res["known_plaintext"][kind]
        assert [p["n"] for p in curve] == [10, 1000]
        assert curve[-1]["psnr"] > curve[0]["psnr"] + 1.0, (kind, curve)
        assert all(0 < p["ssim"] <= 1 for p in curve)
    assert len(res["fresh_init"]) == 1 and res["synthetic"] is None
    assert set(res["utility"]["codes"]) == set(res["utility"]["pixels"])
    md = (out / "privacy_report.md").read_text()
    assert "not encryption" in md and "weights are the key" in md.replace("\n", " ")
    assert "Synthetic-data utility" not in md
    # An existing report needs --force.
    assert main(["privacy-report", str(run_dir), *SMALL_REPORT, "-o", str(out)]) == 2


def test_privacy_report_conditional_has_synthetic_utility(cond_run, run_dir, tmp_path):
    out = tmp_path / "rep"
    assert main(["privacy-report", str(cond_run), *SMALL_REPORT, "--n", "10,20",
                 "--attack-steps", "20", "-o", str(out)]) == 0
    res = json.loads((out / "privacy_report.json").read_text())
    assert res["holder"]["psnr"] == "inf" and res["run"]["conditional"] is True
    syn = res["synthetic"]
    assert syn["n"] == 200 and syn["real_n"] == 200
    assert all(0 <= v <= 1 for v in [*syn["synthetic"].values(), *syn["real"].values()])
    assert "Synthetic-data utility" in (out / "privacy_report.md").read_text()


def test_privacy_report_sections_measure_only_what_is_asked(cond_run, tmp_path):
    out = tmp_path / "rep"
    assert main(["privacy-report", str(cond_run), *SMALL_REPORT, "--sections",
                 "membership,synthetic", "-o", str(out)]) == 0
    res = json.loads((out / "privacy_report.json").read_text())
    assert res["holder"] is None and res["known_plaintext"] is None and res["utility"] is None
    assert 0 <= res["membership"]["auc"] <= 1 and res["synthetic"]["n"] == 200
    md = (out / "privacy_report.md").read_text()
    assert "Membership inference" in md and "Reconstruction attacks" not in md
    assert not (out / "privacy_report.png").exists()


def test_privacy_report_and_release_errors_are_one_line(run_dir, cond_run, tmp_path, capsys):
    from data_fakes import write_mnist_dir

    write_mnist_dir(tmp_path / "mnist")  # 6x6 images: not the run's shape
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "privacy_report.md").write_text("x")
    fast = ["--n", "10,20", "--attack-steps", "1", "--seeds", "0", "--mia-n", "10",
            "--utility-train", "20"]
    cases = {
        "missing run": ["privacy-report", str(tmp_path / "nope"), *fast],
        "existing output": ["privacy-report", str(run_dir), *fast, "-o",
                            str(tmp_path / "taken")],
        "one n": ["privacy-report", str(run_dir), "--n", "10", "-o", str(tmp_path / "r1")],
        "n of 1": ["privacy-report", str(run_dir), "--n", "1,10", "-o", str(tmp_path / "r2")],
        "bad n": ["privacy-report", str(run_dir), "--n", "ten", "-o", str(tmp_path / "r3")],
        "bad section": ["privacy-report", str(run_dir), "--sections", "membership,keys",
                        "-o", str(tmp_path / "r4")],
        "other architecture": ["privacy-report", str(run_dir), *fast, "--independent",
                               str(cond_run), "-o", str(tmp_path / "r4")],
        "wrong data": ["encode", str(run_dir), "--data", "mnist", "--data-dir",
                       str(tmp_path / "mnist"), "-o", str(tmp_path / "m.npz")],
        "npz without --data": ["encode", str(run_dir), "--split", "test",
                               "-o", str(tmp_path / "s.npz")],
        "bad splits": ["encode", str(run_dir), "--data", "digits", "--splits", "dev",
                       "-o", str(tmp_path / "s2.npz")],
        "not a release": ["decode", str(run_dir), str(tmp_path / "taken" /
                                                      "privacy_report.md.npz"),
                          "-o", str(tmp_path / "d.npy")],
    }
    assert_one_line_errors(cases, capsys)


def test_non_image_runs_are_refused(tmp_path, capsys, single_thread):
    run = tmp_path / "moons"
    assert main(["train", "--data", "moons", "--model", "maf", "--steps", "2", "--depth", "1",
                 "--hidden", "4", "--no-progress", "--out", str(run)]) == 0
    assert_one_line_errors({
        "vector run report": ["privacy-report", str(run), "--n", "10,20"],
        "vector run release": ["encode", str(run), "--data", "moons",
                               "-o", str(tmp_path / "c.npz")],
    }, capsys)


# -- the helpers ------------------------------------------------------------------------------
def test_psnr_and_ssim_on_known_inputs():
    from invertible.privacy.attacks import psnr, ssim

    rng = np.random.default_rng(0)
    a = rng.random((3, 1, 8, 8))
    assert np.all(np.isinf(psnr(a, a))) and np.allclose(ssim(a, a), 1.0)
    b = a + 0.1  # MSE 0.01 -> PSNR 20 dB at data range 1
    assert np.allclose(psnr(a, b), 20.0)
    c = np.full((1, 1, 28, 28), 0.5)
    d = c.copy()
    d[0, 0, :14] += 0.2  # MSE = 0.04 / 2 = 0.02
    assert psnr(c, d)[0] == pytest.approx(-10 * math.log10(0.02))
    assert ssim(rng.random((2, 3, 8, 8)), rng.random((2, 3, 8, 8))).shape == (2,)


def test_decoders_fit_small_and_mnist_sized_images():
    from invertible.privacy.attacks import make_decoder

    for shape in ((1, 8, 8), (1, 28, 28), (3, 32, 32)):
        for kind in ("mlp", "conv"):
            out = make_decoder(kind, 12, shape, hidden=32)(torch.randn(2, 12))
            assert out.shape == (2, *shape) and 0 <= out.min() and out.max() <= 1


def test_membership_auc():
    from invertible.privacy.membership import mia_auc, tpr_at_fpr

    rng = np.random.default_rng(0)
    members, others = rng.normal(5, 1, 500), rng.normal(-5, 1, 500)
    assert mia_auc(members, others) == 1.0 and tpr_at_fpr(members, others) == 1.0
    assert mia_auc(others, members) == 0.0
    same = mia_auc(rng.normal(0, 1, 4000), rng.normal(0, 1, 4000))
    assert abs(same - 0.5) < 0.03
    assert mia_auc(np.array([1.0, np.nan]), np.array([0.0, 0.5])) == 0.5
