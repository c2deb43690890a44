"""The command line end to end on tiny budgets, and its handling of user mistakes."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from invertible.cli.main import main
from one_line_errors import assert_one_line_errors

TINY = ["--model", "elementwise", "--steps", "12", "--batch-size", "32", "--no-progress"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "digits"
    assert main(["train", *TINY, "--val-every", "6", "--out", str(out)]) == 0
    return out


def test_train_writes_the_run_folder(run_dir):
    for name in ("config.json", "metrics.jsonl", "loss.png", "samples/final.png",
                 "checkpoints/latest.safetensors", "checkpoints/latest.json",
                 "checkpoints/best.safetensors", "checkpoints/best.json"):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "config.json").read_text())["data"]["n_bins"] == 17
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("val_bpd" in r for r in recs) and any("images_per_s" in r for r in recs)
    assert any(r.get("event") == "test" for r in recs)
    assert Image.open(run_dir / "samples" / "final.png").size[0] >= 64


def test_train_prints_test_bpd_and_samples(tmp_path, capsys):
    assert main(["train", *TINY, "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "test bits/dim:" in out and "samples: " in out and "final.png" in out


def test_evaluate(run_dir, capsys):
    assert main(["evaluate", str(run_dir), "--json"]) == 0
    out = capsys.readouterr().out
    assert "bits/dim" in out and "95% CI" in out
    figures = json.loads(out.strip().splitlines()[-1])
    # The same weights and evaluation seed as the test pass at the end of training.
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    test = next(r for r in recs if r.get("event") == "test")
    assert figures["task"] == "density" and figures["n"] == test["test_n"] == 359
    assert figures["bpd"] == pytest.approx(test["test_bpd"], rel=1e-9)
    assert figures["bpd_std"] == pytest.approx(test["test_bpd_std"], rel=1e-9)
    assert figures["round_trip_max"] < 1e-5


def test_sample_and_interpolate(run_dir, tmp_path):
    png = tmp_path / "s.png"
    assert main(["sample", str(run_dir), "-n", "9", "--temperature", "0.7", "-o", str(png)]) == 0
    assert Image.open(png).size[0] == Image.open(png).size[1]  # a 3 x 3 grid
    npy, again, other = tmp_path / "s.npy", tmp_path / "t.npy", tmp_path / "u.npy"
    for path, seed in ((npy, "1"), (again, "1"), (other, "2")):
        assert main(["sample", str(run_dir), "-n", "5", "--seed", seed, "-o", str(path)]) == 0
    s = np.load(npy)
    assert s.shape == (5, 1, 8, 8) and s.dtype == np.uint8 and s.max() < 17
    assert np.array_equal(s, np.load(again)) and not np.array_equal(s, np.load(other))
    inter = tmp_path / "i.png"
    assert main(["interpolate", str(run_dir), "--pairs", "3", "--steps", "5",
                 "-o", str(inter)]) == 0
    assert Image.open(inter).size[0] > Image.open(inter).size[1]  # 3 rows of 5


@pytest.mark.parametrize("fmt", [".npy", ".safetensors"])
def test_encode_decode_round_trip_is_exact(run_dir, tmp_path, fmt):
    z = tmp_path / f"z{fmt}"
    assert main(["encode", str(run_dir), "--split", "test", "-n", "20", "-o", str(z)]) == 0
    back = tmp_path / "x.npy"
    assert main(["decode", str(run_dir), str(z), "-o", str(back)]) == 0
    from invertible.data import load_dataset

    test = load_dataset("digits", split="test").images[:20].numpy()
    assert np.array_equal(np.load(back), test)


def test_encode_png_and_npy_inputs(run_dir, tmp_path):
    from invertible.data import load_dataset

    levels = load_dataset("digits", split="test").images[:4].numpy()
    np.save(tmp_path / "in.npy", levels)
    assert main(["encode", str(run_dir), "-i", str(tmp_path / "in.npy"),
                 "-o", str(tmp_path / "z.npy")]) == 0
    assert main(["decode", str(run_dir), str(tmp_path / "z.npy"),
                 "-o", str(tmp_path / "back.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "back.npy"), levels)
    # A PNG written the way the grids are (level k -> round(k * 255 / 16)) reads back exactly.
    img = np.round(levels[0, 0].astype(float) * 255 / 16).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "one.png")
    assert main(["encode", str(run_dir), "-i", str(tmp_path / "one.png"),
                 "-o", str(tmp_path / "z1.npy")]) == 0
    assert main(["decode", str(run_dir), str(tmp_path / "z1.npy"),
                 "-o", str(tmp_path / "one.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "one.npy")[0], levels[0])


def test_info(run_dir, capsys):
    assert main(["info", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "parameters" in out and "elementwise" in out and "last metrics" in out


@pytest.mark.parametrize("cmd", ["train", "evaluate", "sample", "interpolate", "encode",
                                 "decode", "compress", "decompress", "info", None])
def test_help_everywhere(cmd, capsys):
    assert main(([cmd] if cmd else []) + ["--help"]) == 0
    assert "usage:" in capsys.readouterr().out


def _bad_cases(run_dir, tmp):
    corrupt = tmp / "corrupt"
    corrupt.mkdir(exist_ok=True)
    for f in ("config.json",):
        (corrupt / f).write_text((run_dir / f).read_text())
    (corrupt / "checkpoints").mkdir(exist_ok=True)
    (corrupt / "checkpoints" / "best.json").write_text(
        (run_dir / "checkpoints" / "best.json").read_text())
    (corrupt / "checkpoints" / "best.safetensors").write_bytes(b"\x10\x00\x00\x00garbage")
    nonempty = tmp / "nonempty"
    nonempty.mkdir(exist_ok=True)
    (nonempty / "keep.txt").write_text("user's file")
    (tmp / "exists.png").write_bytes(b"x")
    (tmp / "bad.npy").write_bytes(b"not numpy")
    (tmp / "bad.png").write_bytes(b"not png")
    np.save(tmp / "wrong.npy", np.zeros((2, 3, 5, 5), np.uint8))
    np.save(tmp / "range.npy", np.full((2, 1, 8, 8), 40, np.uint8))
    np.save(tmp / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    r = str(run_dir)
    return {
        "unknown dataset": ["train", "--data", "nope", "--steps", "1", "--out", str(tmp / "a")],
        "unknown model": ["train", "--model", "nope", "--steps", "1", "--out", str(tmp / "b")],
        "vector model on images": ["train", "--model", "maf", "--steps", "1",
                                   "--out", str(tmp / "c")],
        "missing data dir": ["train", "--data", "mnist", "--data-dir", str(tmp / "none"),
                             "--steps", "1", "--out", str(tmp / "d")],
        "zero steps": ["train", "--steps", "0"],
        "negative lr": ["train", "--steps", "1", "--lr", "-1"],
        "not a number": ["train", "--batch-size", "many"],
        "unknown task": ["train", *TINY, "--task", "nope", "--out", str(tmp / "e")],
        "malformed task option": ["train", *TINY, "--task-option", "x", "--out", str(tmp / "e")],
        "negative val-every": ["train", *TINY, "--val-every", "-1", "--out", str(tmp / "e")],
        "non-empty out": ["train", *TINY, "--out", str(nonempty)],
        "missing run": ["evaluate", str(tmp / "none")],
        "not a run": ["evaluate", str(nonempty)],
        "corrupt checkpoint": ["sample", str(corrupt), "-o", str(tmp / "c.png")],
        "existing output": ["sample", r, "-o", str(tmp / "exists.png")],
        "bad suffix": ["sample", r, "-o", str(tmp / "s.jpg")],
        "zero samples": ["sample", r, "-n", "0", "-o", str(tmp / "z.png")],
        "unreadable npy": ["encode", r, "-i", str(tmp / "bad.npy"), "-o", str(tmp / "z.npy")],
        "unreadable png": ["encode", r, "-i", str(tmp / "bad.png"), "-o", str(tmp / "z.npy")],
        "wrong shape": ["encode", r, "-i", str(tmp / "wrong.npy"), "-o", str(tmp / "z.npy")],
        "out of range": ["encode", r, "-i", str(tmp / "range.npy"), "-o", str(tmp / "z.npy")],
        "pickled npy": ["encode", r, "-i", str(tmp / "obj.npy"), "-o", str(tmp / "z.npy")],
        "latents missing": ["decode", r, str(tmp / "none.npy"), "-o", str(tmp / "x.png")],
        "latents wrong shape": ["decode", r, str(tmp / "wrong.npy"), "-o", str(tmp / "x.png")],
        "unknown model option": ["train", *TINY, "--model-option", "nope=1",
                                 "--out", str(tmp / "f")],
        "malformed model option": ["train", *TINY, "--model-option", "depth",
                                   "--out", str(tmp / "g")],
        "model option changed on resume": ["train", "--resume", r, "--model-option", "depth=3"],
        "unknown command": ["fly"],
    }


def test_user_mistakes_get_one_line_and_exit_2(run_dir, tmp_path, capsys):
    assert_one_line_errors(_bad_cases(run_dir, tmp_path), capsys)
    assert (tmp_path / "nonempty" / "keep.txt").read_text() == "user's file"
    assert (tmp_path / "exists.png").read_bytes() == b"x"


def test_model_options_reach_the_builder_and_persist(tmp_path, capsys):
    out = tmp_path / "r"
    argv = ["train", "--model", "iconvnet", "--steps", "2", "--batch-size", "16", "--no-progress",
            "--model-option", "hybrid=true", "--model-option", "downsample=haar",
            "--model-option", "depth=1", "--out", str(out)]
    assert main(argv) == 0
    opts = json.loads((out / "config.json").read_text())["train"]["model_options"]
    assert opts == {"hybrid": True, "downsample": "haar", "depth": 1}
    capsys.readouterr()
    assert main(["info", str(out)]) == 0  # the run is rebuilt from its saved options
    assert "hybrid=True" in capsys.readouterr().out


@pytest.mark.parametrize("given,expected", [(None, 2e-3), ("5e-4", 5e-4)])
def test_model_default_learning_rate_unless_given(tmp_path, given, expected):
    out = tmp_path / "r"
    argv = ["train", "--model", "glow", "--depth", "1", "--hidden", "8", "--steps", "1",
            "--no-progress", "--out", str(out)] + (["--lr", given] if given else [])
    assert main(argv) == 0
    assert json.loads((out / "config.json").read_text())["train"]["lr"] == expected


def test_force_reuses_a_folder_without_touching_other_files(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["train", *TINY, "--steps", "2", "--out", str(out), "--force"]) == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "checkpoints" / "latest.safetensors").is_file()


def test_python_dash_m_and_console_script():
    r = subprocess.run([sys.executable, "-m", "invertible", "info", "/no/such/run"],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 2 and r.stderr.startswith("invertible: error:")
    assert "Traceback" not in r.stderr


REAL_MODELS = {
    "glow": ["--model", "glow", "--model-option", "levels=2", "--model-option", "depth=2",
             "--model-option", "hidden=16"],
    "iconvnet": ["--model", "iconvnet"],
}


@pytest.fixture(scope="module", params=sorted(REAL_MODELS))
def real_run(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("real") / request.param
    assert main(["train", *REAL_MODELS[request.param], "--steps", "40", "--batch-size", "32",
                 "--warmup", "5",
                 "--val-every", "20", "--no-progress", "--out", str(out)]) == 0
    return out


def test_real_models_end_to_end(real_run, tmp_path, capsys):
    """Glow and the i-ConvNet: evaluate, exact encode/decode, sample, interpolate, info."""
    recs = [json.loads(x) for x in (real_run / "metrics.jsonl").read_text().splitlines()]
    bpd = [r["train_bpd"] for r in recs if "train_bpd" in r]
    assert bpd[-1] < bpd[0] - 0.1  # 40 steps of a real model: clearly learning
    capsys.readouterr()
    assert main(["evaluate", str(real_run), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["bpd"] == pytest.approx(
        next(r["test_bpd"] for r in recs if r.get("event") == "test"), rel=1e-9)
    assert figures["round_trip_max"] < 1e-4
    z = tmp_path / "z.npy"
    assert main(["encode", str(real_run), "--split", "test", "-n", "50", "-o", str(z)]) == 0
    assert np.load(z).shape == (50, 1, 8, 8)
    back = tmp_path / "x.npy"
    assert main(["decode", str(real_run), str(z), "-o", str(back)]) == 0
    from invertible.data import load_dataset

    assert np.array_equal(np.load(back), load_dataset("digits", split="test").images[:50].numpy())
    s = tmp_path / "s.npy"
    assert main(["sample", str(real_run), "-n", "16", "--temperature", "0.7", "--seed", "0",
                 "-o", str(s)]) == 0
    assert np.load(s).shape == (16, 1, 8, 8)
    assert main(["interpolate", str(real_run), "--pairs", "2", "--steps", "4",
                 "-o", str(tmp_path / "i.png")]) == 0
    assert main(["info", str(real_run)]) == 0
    assert "task: density" in capsys.readouterr().out


def _flip_tensor_byte(path):
    raw = bytearray(path.read_bytes())
    header = int.from_bytes(raw[:8], "little")
    raw[8 + header + (len(raw) - 8 - header) // 2] ^= 0x40  # a byte in the tensor data
    path.write_bytes(bytes(raw))


def test_corrupt_checkpoint_falls_back_or_fails_in_one_line(real_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(real_run, run)
    ckpt = run / "checkpoints"
    _flip_tensor_byte(ckpt / "best.safetensors")
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    err = capsys.readouterr().err
    assert "best.safetensors is corrupt" in err and "using the latest checkpoint" in err
    assert main(["sample", str(run), "-n", "4", "-o", str(tmp_path / "s.png")]) == 0
    _flip_tensor_byte(ckpt / "latest.safetensors")
    for argv in (["evaluate", str(run)], ["sample", str(run), "-o", str(tmp_path / "t.png")],
                 ["train", "--resume", str(run), "--steps", "50"]):
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is corrupt" in err[0] and "Traceback" not in err[0], err
    assert not (tmp_path / "t.png").exists()


def test_a_corrupt_metrics_log_is_reported_in_one_line(run_dir, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    with open(run / "metrics.jsonl", "a") as f:
        f.write("{not json\n{\"step\": 99}\n")
    capsys.readouterr()
    assert main(["info", str(run)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"invertible: warning: {run / 'metrics.jsonl'}: 1 malformed line skipped"]


def test_val_fraction_sets_the_held_out_share(tmp_path, capsys):
    assert main(["train", *TINY, "--val-fraction", "0.5", "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "(719 train / 719 val)" in out
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["train"]["val_fraction"] == 0.5
