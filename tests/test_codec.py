"""The lossless codec: ANS coding of the integer flow's latents, the .inv container, the
inputs it restores, and the ways a stream can go wrong (each an error, never wrong pixels)."""

from __future__ import annotations

import gzip
import hashlib
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch

from codec_models import perturbed_flow
from invertible.codec.coder import CodingError, decode_images, encode_images
from invertible.codec.compressor import Compressor, StreamError
from invertible.codec.container import FORMAT_VERSION, MAGIC, read_container
from invertible.codec.images import ImageInputError, SourceImages, read_images, write_images

from data_fakes import idx_bytes, write_image

pytestmark = pytest.mark.usefixtures("one_thread")

MODEL_ID = hashlib.sha256(b"test model").digest()


@pytest.fixture(scope="module")
def mnist_flow():
    return perturbed_flow((1, 28, 28), levels=3, seed=1)


@pytest.fixture(scope="module")
def small():
    """A model of 8x8 images with 17 levels (the embedded digits' size) and its compressor."""
    flow = perturbed_flow((1, 8, 8), n_bins=17, levels=2, seed=2)
    return Compressor(flow, MODEL_ID)


def digits_like(n: int, seed: int = 0, h: int = 8, w: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 17, (n, h, w)).astype(np.uint8)


def test_coder_round_trip_and_length_near_the_model(mnist_flow):
    x = torch.randint(0, 256, (6, 1, 28, 28))
    words = encode_images(mnist_flow, x)
    assert torch.equal(decode_images(mnist_flow, words, 6), x)
    with torch.no_grad():
        ideal = -float(mnist_flow.log_prob(x).sum()) / np.log(2)
    # Never more than 1% above the ideal, plus the coder's final state. (It can be below it:
    # a symbol the model finds absurdly unlikely costs the escape's bounded price instead.)
    assert 32 * len(words) <= ideal * 1.01 + 64


def test_coder_escapes_symbols_beyond_the_tables():
    # Pixels far from what the (narrow) prior expects still code exactly.
    flow = perturbed_flow((1, 8, 8), levels=2, seed=3, scale=0.3)
    x = torch.full((3, 1, 8, 8), 255)
    x[1] = 0
    assert torch.equal(decode_images(flow, encode_images(flow, x), 3), x)


def test_many_images_are_coded_in_several_model_calls(monkeypatch):
    from invertible.codec import coder

    flow = perturbed_flow((1, 8, 8), levels=2, seed=4)
    x = torch.randint(0, 256, (11, 1, 8, 8))
    one_call = encode_images(flow, x)
    monkeypatch.setattr(coder, "MAX_BATCH", 4)  # 4 + 4 + 3
    words = encode_images(flow, x)
    assert torch.equal(decode_images(flow, words, 11), x)
    assert not np.array_equal(words, one_call)  # really three calls, three sets of symbols


def test_extra_data_is_refused(mnist_flow):
    x = torch.randint(0, 256, (2, 1, 28, 28))
    words = encode_images(mnist_flow, x)
    with pytest.raises(CodingError):
        decode_images(mnist_flow, words, 1)


@pytest.mark.parametrize("shape", [(3, 8, 8), (1, 8, 8), (2, 20, 13), (1, 5, 30)])
def test_compress_round_trip_with_tiles_and_padding(small, shape):
    px = digits_like(shape[0], seed=shape[1], h=shape[1], w=shape[2])
    data = small.compress(SourceImages(px, "array", {"dtype": "|u1", "shape": list(shape)}))
    back = small.decompress(data)
    assert np.array_equal(back.pixels, px) and back.meta["shape"] == list(shape)
    header, _, _ = read_container(data)
    assert (header.count, header.height, header.width) == shape


def test_chunks_decode_alone_and_in_parallel(small):
    px = digits_like(50, seed=5)
    data = small.compress(SourceImages(px, "array", {}), chunk=7)
    header, _, chunks = read_container(data)
    assert header.n_chunks == 8 and len(chunks) == 8
    assert np.array_equal(small.decompress(data, workers=3).pixels, px)
    # One damaged chunk is named; the error says which images it held.
    bad = bytearray(data)
    bad[len(data) // 2] ^= 0xFF
    with pytest.raises(StreamError, match=r"chunk \d of 8 \(images \d+\.\.\d+\) is corrupt"):
        small.decompress(bytes(bad))


def test_thread_count_does_not_change_the_bytes(mnist_flow):
    comp = Compressor(mnist_flow, MODEL_ID)
    px = np.random.default_rng(1).integers(0, 256, (20, 28, 28)).astype(np.uint8)
    src = SourceImages(px, "array", {})
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = comp.compress(src)
        torch.set_num_threads(2)
        two = comp.compress(src)
        assert np.array_equal(comp.decompress(one).pixels, px)
    finally:
        torch.set_num_threads(before)
    assert one == two
    assert torch.get_num_threads() == before  # the codec restores the caller's setting


_FRESH = """
import sys, hashlib, numpy as np, torch
sys.path.insert(0, {tests!r})
from codec_models import perturbed_flow
from invertible.codec.compressor import Compressor
comp = Compressor(perturbed_flow((1, 28, 28), levels=3, seed=1), hashlib.sha256(b"test model").digest())
torch.set_num_threads({threads})
data = open({path!r}, "rb").read()
px = comp.decompress(data).pixels
sys.stdout.write(hashlib.sha256(px.tobytes()).hexdigest() + " ")
again = comp.compress(comp.decompress(data))
sys.stdout.write(hashlib.sha256(again).hexdigest())
"""


@pytest.mark.parametrize("threads", [1, 2])
def test_a_fresh_process_decodes_and_reencodes_the_same_bytes(mnist_flow, tmp_path, threads):
    comp = Compressor(mnist_flow, MODEL_ID)
    px = np.random.default_rng(2).integers(0, 256, (12, 28, 28)).astype(np.uint8)
    data = comp.compress(SourceImages(px, "array", {}))
    path = tmp_path / "s.inv"
    path.write_bytes(data)
    code = _FRESH.format(tests=str(__import__("pathlib").Path(__file__).parent), path=str(path),
                         threads=threads)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=300).stdout.split()
    assert out == [hashlib.sha256(px.tobytes()).hexdigest(), hashlib.sha256(data).hexdigest()]


def test_mnist_test_images_round_trip(mnist_dir, mnist_flow):
    from invertible.data.idx import IMAGE_MAGIC, read_idx

    px = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz", IMAGE_MAGIC)[:300]
    comp = Compressor(mnist_flow, MODEL_ID)
    data = comp.compress(SourceImages(np.ascontiguousarray(px), "idx", {}))
    assert np.array_equal(comp.decompress(data).pixels, px)


# -- what can go wrong -----------------------------------------------------------------------
def _stream(small, n=30, chunk=10):
    px = digits_like(n, seed=9)
    return px, small.compress(SourceImages(px, "array", {}), chunk=chunk)


def test_byte_flips_are_caught_or_harmless(small):
    px, data = _stream(small)
    rng = np.random.default_rng(0)
    caught = 0
    positions = list(range(40)) + list(rng.integers(0, len(data), 300))
    for pos in positions:
        bad = bytearray(data)
        bad[pos] ^= int(rng.integers(1, 256))
        try:
            out = small.decompress(bytes(bad))
        except StreamError as err:
            assert "\n" not in str(err)
            caught += 1
            continue
        # Decoded despite the flip: only if every pixel is right (checksums matched).
        assert np.array_equal(out.pixels, px), f"silent garbage after flipping byte {pos}"
    assert caught >= len(positions) - 5


def test_truncated_streams_are_refused(small):
    _, data = _stream(small)
    for cut in [0, 3, 5, 12, 20, len(data) // 2, len(data) - 1]:
        with pytest.raises(StreamError, match="truncated|wrong magic|corrupt"):
            small.decompress(data[:cut])
    with pytest.raises(StreamError, match="after the last chunk"):
        small.decompress(data + b"\0")


def test_wrong_model_and_unknown_version_are_refused(small):
    _, data = _stream(small)
    other = Compressor(small.flow, hashlib.sha256(b"another").digest())
    with pytest.raises(StreamError, match="made by another model"):
        other.decompress(data)
    newer = data[:4] + bytes([FORMAT_VERSION + 1]) + data[5:]
    with pytest.raises(StreamError, match=f"version {FORMAT_VERSION + 1} is not supported"):
        small.decompress(newer)
    assert data.startswith(MAGIC)


def test_pixels_beyond_the_models_levels_are_refused(small):
    with pytest.raises(StreamError, match="exceeds this model's 17 levels"):
        small.compress(SourceImages(np.full((1, 8, 8), 200, np.uint8), "array", {}))


def test_the_checksum_covers_the_header(small):
    px, data = _stream(small, n=4, chunk=4)
    _, header_crc, chunks = read_container(data)
    assert chunks[0].checksum == zlib.crc32(px.tobytes(), header_crc)


# -- inputs and their restoration -----------------------------------------------------------------
@pytest.mark.parametrize("gz", [True, False])
def test_idx_input_restored_byte_for_byte(small, tmp_path, gz):
    px = digits_like(25, seed=3)
    raw = idx_bytes(px, 2051)
    src = tmp_path / ("in.idx.gz" if gz else "in.idx")
    src.write_bytes(gzip.compress(raw) if gz else raw)
    images = read_images(src)
    assert images.source == "idx"
    back = small.decompress(small.compress(images))
    write_images(back, tmp_path / "out.idx")
    assert (tmp_path / "out.idx").read_bytes() == raw
    write_images(back, tmp_path / "out.idx.gz")
    assert gzip.decompress((tmp_path / "out.idx.gz").read_bytes()) == raw


@pytest.mark.parametrize(("dtype", "shape"), [(np.uint8, (4, 8, 8)), (np.int64, (3, 1, 8, 8)),
                                              (np.uint16, (8, 8))])
def test_npy_input_restored_with_its_dtype_and_shape(small, tmp_path, dtype, shape):
    a = np.random.default_rng(4).integers(0, 17, shape).astype(dtype)
    np.save(tmp_path / "in.npy", a)
    back = small.decompress(small.compress(read_images(tmp_path / "in.npy")))
    write_images(back, tmp_path / "out.npy")
    b = np.load(tmp_path / "out.npy")
    assert b.dtype == a.dtype and b.shape == a.shape and np.array_equal(a, b)


def test_png_and_folder_inputs_restored_with_the_same_pixels(small, tmp_path):
    from PIL import Image

    px = digits_like(3, seed=6, h=11, w=9)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, a in enumerate(px):
        write_image(folder / f"im{i}.png", a)
    back = small.decompress(small.compress(read_images(folder)))
    assert back.source == "folder"
    write_images(back, tmp_path / "restored")
    for i, a in enumerate(px):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "restored" / f"im{i}.png")), a)
    one = small.decompress(small.compress(read_images(folder / "im1.png")))
    write_images(one, tmp_path / "one.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "one.png")), px[1])


def test_bad_inputs_get_one_line_errors(tmp_path):
    from PIL import Image

    (tmp_path / "text.txt").write_text("hello")
    Image.new("RGB", (8, 8)).save(tmp_path / "colour.png")
    np.save(tmp_path / "float.npy", np.zeros((2, 8, 8)))
    np.save(tmp_path / "big.npy", np.full((2, 8, 8), 300))
    (tmp_path / "labels.idx").write_bytes(idx_bytes(np.zeros(5, np.uint8), 2049))
    cases = {"text.txt": "not an IDX file", "colour.png": "RGB image",
             "float.npy": "float64 values", "big.npy": "outside 0..255",
             "labels.idx": "wrong magic", "missing.png": "does not exist"}
    for name, message in cases.items():
        with pytest.raises(ImageInputError, match=message):
            read_images(tmp_path / name)


def test_outputs_are_never_overwritten_without_force(small, tmp_path):
    px = digits_like(2)
    back = small.decompress(small.compress(SourceImages(px, "array", {"dtype": "|u1",
                                                                      "shape": [2, 8, 8]})))
    out = tmp_path / "o.npy"
    out.write_bytes(b"precious")
    with pytest.raises(ImageInputError, match="exists"):
        write_images(back, out)
    assert out.read_bytes() == b"precious"
    write_images(back, out, force=True)
    assert np.array_equal(np.load(out), px)
    with pytest.raises(ImageInputError, match="write them to a .npy file"):
        write_images(back, tmp_path / "o.png")
