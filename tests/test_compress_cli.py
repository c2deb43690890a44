"""``invertible train --task codec``, ``compress`` and ``decompress`` end to end on a tiny
integer flow trained on the embedded digits (8x8, 17 levels)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from invertible.cli.main import main
from one_line_errors import assert_one_line_errors

from data_fakes import idx_bytes, write_image

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--task", "codec", "--steps", "15", "--batch-size", "32", "--levels", "2", "--depth",
        "1", "--hidden", "8", "--no-progress", "--val-every", "0"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("codec_runs")
    for seed in ("0", "1"):
        assert main(["train", *TINY, "--seed", seed, "--out", str(root / f"run{seed}")]) == 0
    return root / "run0", root / "run1"


def digits(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 17, (n, 8, 8)).astype(np.uint8)


def test_train_evaluate_and_sample_a_codec_run(runs, capsys, tmp_path):
    run, _ = runs
    assert (run / "samples" / "final.png").exists()
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    assert "the model's cross-entropy" in out and "no dequantization" in out
    n = int(out.split("exact round trips (integer latents back to the very pixels): ")[1]
            .split(" of ")[1].split()[0])
    assert f"{n} of {n}" in out
    assert main(["sample", str(run), "-n", "8", "-o", str(tmp_path / "s.npy")]) == 0
    s = np.load(tmp_path / "s.npy")
    assert s.shape == (8, 1, 8, 8) and s.max() <= 16


def test_compress_decompress_idx_npy_png_and_folder(runs, tmp_path, capsys):
    run, _ = runs
    px = digits(40)
    raw = idx_bytes(px, 2051)
    (tmp_path / "in.idx.gz").write_bytes(gzip.compress(raw))
    np.save(tmp_path / "in.npy", px[:, None].astype(np.int32))
    folder = tmp_path / "pngs"
    for i in range(3):
        write_image(folder / f"d{i}.png", px[i])
    big = np.random.default_rng(1).integers(0, 17, (19, 30)).astype(np.uint8)
    write_image(tmp_path / "big.png", big)
    for name, out in [("in.idx.gz", "out.idx"), ("in.npy", "out.npy"), ("pngs", "out_pngs"),
                      ("big.png", "out.png")]:
        capsys.readouterr()
        assert main(["compress", str(run), str(tmp_path / name), "-o",
                     str(tmp_path / f"{name}.inv"), "--no-progress"]) == 0
        line = capsys.readouterr().out
        assert "bits/dim" in line and "ratio" in line and "images/s" in line
        assert main(["decompress", str(run), str(tmp_path / f"{name}.inv"), "-o",
                     str(tmp_path / out), "--workers", "2", "--no-progress"]) == 0
        assert "checksums verified" in capsys.readouterr().out
    assert (tmp_path / "out.idx").read_bytes() == raw
    back = np.load(tmp_path / "out.npy")
    assert back.dtype == np.int32 and np.array_equal(back[:, 0], px)
    from PIL import Image

    for i in range(3):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out_pngs" / f"d{i}.png")), px[i])
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")), big)


def test_stream_and_input_mistakes_get_one_line_errors(runs, tmp_path, capsys):
    run, other = runs
    np.save(tmp_path / "in.npy", digits(20))
    stream = tmp_path / "s.inv"
    assert main(["compress", str(run), str(tmp_path / "in.npy"), "-o", str(stream),
                 "--chunk", "5", "--no-progress"]) == 0
    data = stream.read_bytes()
    (tmp_path / "trunc.inv").write_bytes(data[: len(data) - 9])
    flipped = bytearray(data)
    flipped[len(data) - 20] ^= 0x41
    (tmp_path / "flip.inv").write_bytes(bytes(flipped))
    (tmp_path / "v9.inv").write_bytes(data[:4] + b"\x09" + data[5:])
    (tmp_path / "note.txt").write_text("not an image")
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "rgb.png")
    np.save(tmp_path / "mnist.npy", np.full((2, 28, 28), 255, np.uint8))
    (tmp_path / "taken.npy").write_bytes(b"keep me")
    dec = ["decompress", str(run)]
    cases = {
        "truncated": [*dec, str(tmp_path / "trunc.inv"), "-o", str(tmp_path / "a.npy")],
        "corrupt": [*dec, str(tmp_path / "flip.inv"), "-o", str(tmp_path / "b.npy")],
        "version": [*dec, str(tmp_path / "v9.inv"), "-o", str(tmp_path / "c.npy")],
        "wrong model": ["decompress", str(other), str(stream), "-o", str(tmp_path / "d.npy")],
        "not a stream": [*dec, str(tmp_path / "in.npy"), "-o", str(tmp_path / "e.npy")],
        "exists": [*dec, str(stream), "-o", str(tmp_path / "taken.npy")],
        "wrong output kind": [*dec, str(stream), "-o", str(tmp_path / "f.png")],
        "not an image": ["compress", str(run), str(tmp_path / "note.txt"), "-o",
                         str(tmp_path / "g.inv")],
        "colour": ["compress", str(run), str(tmp_path / "rgb.png"), "-o", str(tmp_path / "h.inv")],
        "levels": ["compress", str(run), str(tmp_path / "mnist.npy"), "-o",
                   str(tmp_path / "i.inv")],
        "suffix": ["compress", str(run), str(tmp_path / "in.npy"), "-o", str(tmp_path / "j.bin")],
        "overwrite": ["compress", str(run), str(tmp_path / "in.npy"), "-o", str(stream)],
        "not a codec run": ["compress", str(tmp_path / "nowhere"), str(tmp_path / "in.npy"),
                            "-o", str(tmp_path / "k.inv")],
    }
    assert_one_line_errors(cases, capsys)
    # Nothing was written, nothing overwritten.
    assert (tmp_path / "taken.npy").read_bytes() == b"keep me"
    assert stream.read_bytes() == data
    assert not any((tmp_path / f"{c}.npy").exists() for c in "abcdef")
    assert not any((tmp_path / f"{c}.inv").exists() for c in "ghik")
    assert not list(tmp_path.glob(".*"))  # no temporary leftovers


def test_other_tasks_runs_are_refused(tmp_path, capsys):
    run = tmp_path / "density"
    assert main(["train", "--steps", "3", "--no-progress", "--val-every", "0", "--model",
                 "glow", "--depth", "1", "--levels", "1", "--hidden", "8", "--out",
                 str(run)]) == 0
    np.save(tmp_path / "in.npy", digits(2))
    assert_one_line_errors({"density run": ["compress", str(run), str(tmp_path / "in.npy"),
                                            "-o", str(tmp_path / "x.inv")]}, capsys)
