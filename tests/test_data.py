"""Loaders, splits, and corrupt or malicious inputs for invertible.data."""

from __future__ import annotations

import gzip
import tracemalloc

import numpy as np
import pytest
import torch
from PIL import Image

from invertible.data import DATASETS, DatasetError, ImageData, VectorData, load_dataset

from data_fakes import (
    CIFAR_TRAIN,
    cifar_bytes,
    idx_bytes,
    image_ids,
    tagged_images,
    write_bytes,
    write_cifar_dir,
    write_image,
    write_mnist_dir,
)

TRAIN_IMG = "train-images-idx3-ubyte"
TRAIN_LAB = "train-labels-idx1-ubyte"


# --- IDX (MNIST, Fashion-MNIST) ------------------------------------------------------------
@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_loader_returns_the_file_contents(tmp_path, gz, name):
    arrays = write_mnist_dir(tmp_path, gz=gz)
    test = load_dataset(name, tmp_path, "test")
    assert isinstance(test, ImageData)
    assert test.images.dtype == torch.uint8 and test.labels.dtype == torch.int64
    assert test.shape == (1, 6, 6) and test.n_bins == 256 and test.name == name
    np.testing.assert_array_equal(test.images[:, 0].numpy(), arrays["test"][0])
    np.testing.assert_array_equal(test.labels.numpy(), arrays["test"][1])

    train = load_dataset(name, tmp_path, "train", val_fraction=0.25)
    val = load_dataset(name, tmp_path, "val", val_fraction=0.25)
    images, labels = arrays["train"]
    for part in (train, val):  # each item keeps its own label
        ids = image_ids(part.images.numpy())
        np.testing.assert_array_equal(part.labels.numpy(), labels[ids])
        np.testing.assert_array_equal(part.images[:, 0].numpy(), images[ids])
    assert len(val) == 15 and len(train) == 45


def test_idx_dotted_file_names_are_accepted(tmp_path):
    write_mnist_dir(tmp_path, gz=False)
    for f in tmp_path.iterdir():
        f.rename(f.with_name(f.name.replace("-idx", ".idx")))
    assert len(load_dataset("mnist", tmp_path, "test")) == 20


def test_splits_are_deterministic_disjoint_and_cover_train(tmp_path):
    write_mnist_dir(tmp_path, n_train=200)

    def ids(split, seed):
        return image_ids(load_dataset("mnist", tmp_path, split, seed=seed).images.numpy())

    train, val = ids("train", 0), ids("val", 0)
    assert len(val) == 20 and len(train) == 180
    assert not set(train) & set(val)
    assert sorted([*train, *val]) == list(range(200))
    np.testing.assert_array_equal(train, ids("train", 0))
    np.testing.assert_array_equal(val, ids("val", 0))
    assert set(ids("val", 1)) != set(val)
    np.testing.assert_array_equal(ids("test", 0), ids("test", 5))


def test_zero_val_fraction_keeps_all_train_and_rejects_val(tmp_path):
    write_mnist_dir(tmp_path)
    assert len(load_dataset("mnist", tmp_path, "train", val_fraction=0.0)) == 60
    with pytest.raises(DatasetError, match="val split is empty"):
        load_dataset("mnist", tmp_path, "val", val_fraction=0.0)


def test_image_size_grayscale_and_n_samples(tmp_path):
    arrays = write_mnist_dir(tmp_path)
    d = load_dataset("mnist", tmp_path, "test", image_size=(8, 4), grayscale=False, n_samples=5)
    assert d.images.shape == (5, 3, 8, 4) and d.images.dtype == torch.uint8
    assert torch.equal(d.images[:, 0], d.images[:, 2])
    np.testing.assert_array_equal(d.labels.numpy(), arrays["test"][1][:5])  # the first five


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_idx_is_an_error_naming_the_file(tmp_path, gz):
    write_mnist_dir(tmp_path, gz=gz)
    data = idx_bytes(tagged_images(60, (6, 6)))[:-7]
    path = write_bytes(tmp_path / TRAIN_IMG, data, gz)
    with pytest.raises(DatasetError, match=rf"{path.name}.*truncated"):
        load_dataset("mnist", tmp_path)


@pytest.mark.parametrize("gz", [True, False])
def test_trailing_bytes_after_idx_data_are_an_error(tmp_path, gz):
    write_mnist_dir(tmp_path, gz=gz)
    write_bytes(tmp_path / TRAIN_LAB, idx_bytes(np.zeros(60, np.uint8)) + b"\0", gz)
    with pytest.raises(DatasetError, match=TRAIN_LAB):
        load_dataset("mnist", tmp_path)


def test_truncated_idx_header(tmp_path):
    write_mnist_dir(tmp_path, gz=False)
    (tmp_path / TRAIN_IMG).write_bytes(b"\0\0\x08\x03\0\0")
    with pytest.raises(DatasetError, match="truncated IDX header"):
        load_dataset("mnist", tmp_path)


def test_wrong_magic_is_an_error(tmp_path):
    write_mnist_dir(tmp_path)
    # a label file where the image file should be
    write_bytes(tmp_path / TRAIN_IMG, idx_bytes(np.zeros(60, np.uint8)), gz=True)
    with pytest.raises(DatasetError, match=rf"{TRAIN_IMG}.gz: wrong magic number 2049"):
        load_dataset("mnist", tmp_path)


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("dims", [(0xFFFFFFFF, 0xFFFF, 0xFFFF), (1_000_000, 28, 28)])
def test_header_claiming_huge_dims_allocates_nothing_large(tmp_path, gz, dims):
    write_mnist_dir(tmp_path, gz=gz)
    write_bytes(tmp_path / TRAIN_IMG, idx_bytes(tagged_images(60, (28, 28)), dims=dims), gz)
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match=TRAIN_IMG):
            load_dataset("mnist", tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20  # a claimed 784 MB must not be allocated


def test_label_count_mismatch(tmp_path):
    write_mnist_dir(tmp_path)
    write_bytes(tmp_path / TRAIN_LAB, idx_bytes(np.zeros(59, np.uint8)), gz=True)
    with pytest.raises(DatasetError, match="60 images but .* 59 labels"):
        load_dataset("mnist", tmp_path)


def test_label_out_of_range(tmp_path):
    write_mnist_dir(tmp_path)
    write_bytes(tmp_path / TRAIN_LAB, idx_bytes(np.full(60, 12, np.uint8)), gz=True)
    with pytest.raises(DatasetError, match="label 12"):
        load_dataset("mnist", tmp_path)


def test_corrupt_gzip_stream(tmp_path):
    write_mnist_dir(tmp_path)
    good = (tmp_path / f"{TRAIN_IMG}.gz").read_bytes()
    (tmp_path / f"{TRAIN_IMG}.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(DatasetError, match=rf"{TRAIN_IMG}.gz"):
        load_dataset("mnist", tmp_path)
    (tmp_path / f"{TRAIN_IMG}.gz").write_bytes(good[:10] + b"garbage" * 20)
    with pytest.raises(DatasetError, match="corrupt gzip"):
        load_dataset("mnist", tmp_path)


def test_missing_files_and_folders(tmp_path):
    with pytest.raises(DatasetError, match="does not exist.*--download"):
        load_dataset("mnist", tmp_path / "nowhere")
    write_mnist_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match="missing t10k-labels-idx1-ubyte.gz"):
        load_dataset("mnist", tmp_path, "test")


def test_real_mnist(mnist_dir):
    train = load_dataset("mnist", mnist_dir, "train", val_fraction=0.0)
    test = load_dataset("mnist", mnist_dir, "test")
    assert train.images.shape == (60000, 1, 28, 28) and len(train.labels) == 60000
    assert test.images.shape == (10000, 1, 28, 28) and len(test.labels) == 10000
    assert train.n_bins == test.n_bins == 256
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0
    assert train.labels[:5].tolist() == [5, 0, 4, 1, 9]  # the well-known first labels
    assert sorted(torch.unique(test.labels).tolist()) == list(range(10))
    val = load_dataset("mnist", mnist_dir, "val")
    assert len(val) == 6000


# --- CIFAR-10 binary -------------------------------------------------------------------------
@pytest.mark.parametrize("nested", [False, True])
def test_cifar_loader_returns_the_file_contents(tmp_path, nested):
    arrays = write_cifar_dir(tmp_path / "cifar-10-batches-bin" if nested else tmp_path)
    test = load_dataset("cifar10", tmp_path, "test")
    assert test.shape == (3, 32, 32) and test.n_bins == 256
    np.testing.assert_array_equal(test.images.numpy(), arrays["test"][0])
    np.testing.assert_array_equal(test.labels.numpy(), arrays["test"][1])
    train = load_dataset("cifar10", tmp_path, "train", val_fraction=0.2)
    val = load_dataset("cifar10", tmp_path, "val", val_fraction=0.2)
    ids = np.concatenate([image_ids(train.images.numpy()), image_ids(val.images.numpy())])
    assert sorted(ids) == list(range(20)) and len(val) == 4
    grey = load_dataset("cifar10", tmp_path, "test", grayscale=True)
    assert grey.shape == (1, 32, 32)
    expected = np.asarray(Image.fromarray(arrays["test"][0][0].transpose(1, 2, 0)).convert("L"))
    np.testing.assert_array_equal(grey.images[0, 0].numpy(), expected)


def test_cifar_file_of_wrong_length(tmp_path):
    write_cifar_dir(tmp_path)
    with open(tmp_path / CIFAR_TRAIN[2], "ab") as f:
        f.write(b"\0" * 100)
    with pytest.raises(DatasetError, match=rf"{CIFAR_TRAIN[2]}.*3073-byte records"):
        load_dataset("cifar10", tmp_path)
    (tmp_path / CIFAR_TRAIN[2]).write_bytes(b"")
    with pytest.raises(DatasetError, match=CIFAR_TRAIN[2]):
        load_dataset("cifar10", tmp_path)


def test_cifar_bad_label_and_missing_batch(tmp_path):
    write_cifar_dir(tmp_path)
    images = tagged_images(2, (3, 32, 32))
    (tmp_path / "test_batch.bin").write_bytes(cifar_bytes(images, np.array([3, 200])))
    with pytest.raises(DatasetError, match="label 200"):
        load_dataset("cifar10", tmp_path, "test")
    (tmp_path / CIFAR_TRAIN[4]).unlink()
    with pytest.raises(DatasetError, match=f"missing.*{CIFAR_TRAIN[4]}"):
        load_dataset("cifar10", tmp_path)
    with pytest.raises(DatasetError, match="no CIFAR-10 binary files"):
        load_dataset("cifar10", tmp_path / "empty")


# --- image folder ----------------------------------------------------------------------------
def _colour(i: int, size=(10, 12)) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 256, size=(*size, 3), dtype=np.uint8)


def test_folder_of_png_and_jpeg_with_class_subfolders(tmp_path):
    for i in range(6):
        write_image(tmp_path / ("cats" if i % 2 else "dogs") / f"{i}.png", _colour(i))
    write_image(tmp_path / "dogs" / "x.JPG", _colour(9), fmt="JPEG")
    (tmp_path / "dogs" / "notes.txt").write_text("not an image, ignored")
    (tmp_path / ".thumbs").mkdir()
    (tmp_path / ".thumbs" / "junk.png").write_bytes(b"hidden, ignored")
    parts = [
        load_dataset("folder", tmp_path, s, val_fraction=0.2) for s in ("train", "val", "test")
    ]
    assert sum(len(p) for p in parts) == 7
    for p in parts:
        assert p.shape == (3, 10, 12) and p.n_bins == 256 and p.labels.shape == (len(p),)
    # the PNGs come back bit-exact, with the label of their subfolder
    all_imgs = torch.cat([p.images for p in parts])
    all_labels = torch.cat([p.labels for p in parts])
    # classes are the sorted subfolder names: cats (3 PNGs) = 0, dogs (3 PNGs + 1 JPEG) = 1
    assert all_labels.dtype == torch.int64
    assert torch.bincount(all_labels).tolist() == [3, 4]
    for i in range(6):
        ref = torch.from_numpy(_colour(i).transpose(2, 0, 1).copy())
        hits = [k for k in range(7) if torch.equal(all_imgs[k], ref)]
        assert len(hits) == 1 and int(all_labels[hits[0]]) == (0 if i % 2 else 1)


def test_folder_grey_detection_resize_and_forced_channels(tmp_path):
    for i in range(5):
        write_image(tmp_path / f"g{i}.png", _colour(i)[..., 0])
    d = load_dataset("folder", tmp_path, "train", val_fraction=0.0)
    assert d.shape == (1, 10, 12) and d.labels is None
    d = load_dataset("folder", tmp_path, "train", image_size=4, grayscale=False)
    assert d.shape == (3, 4, 4)
    write_image(tmp_path / "c.png", _colour(7))
    assert load_dataset("folder", tmp_path, "test").shape[0] == 3


def test_folder_16_bit_png_is_scaled_not_clipped(tmp_path):
    arr = (np.arange(120, dtype=np.uint16).reshape(10, 12) * 500).astype(np.uint16)
    for i in range(3):
        Image.fromarray(arr).save(tmp_path / f"{i}.png")
    d = load_dataset("folder", tmp_path, "train", val_fraction=0.0)
    np.testing.assert_array_equal(d.images[0, 0].numpy(), (arr >> 8).astype(np.uint8))


def test_folder_non_image_file_with_image_extension(tmp_path):
    for i in range(4):
        write_image(tmp_path / f"{i}.png", _colour(i))
    (tmp_path / "broken.png").write_text("this is not a PNG")
    with pytest.raises(DatasetError, match="broken.png"):
        load_dataset("folder", tmp_path)


def test_folder_truncated_image(tmp_path):
    for i in range(4):
        write_image(tmp_path / f"{i}.png", _colour(i, (64, 64)))
    data = (tmp_path / "0.png").read_bytes()
    (tmp_path / "0.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="0.png"):
        for split in ("train", "val", "test"):
            load_dataset("folder", tmp_path, split)


def test_folder_mixed_sizes_need_image_size(tmp_path):
    for i in range(4):
        write_image(tmp_path / f"{i}.png", _colour(i, (10 + i, 12)))
    with pytest.raises(DatasetError, match="differ in size.*image size"):
        load_dataset("folder", tmp_path, val_fraction=0.0)
    assert load_dataset("folder", tmp_path, image_size=(5, 6)).shape == (3, 5, 6)


def test_folder_decompression_bomb_is_refused(tmp_path, monkeypatch):
    for i in range(3):
        write_image(tmp_path / f"{i}.png", _colour(i))
    write_image(tmp_path / "bomb.png", np.zeros((40, 40), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400)  # 10x12 passes, 40x40 is a "bomb"
    with pytest.raises(DatasetError, match="bomb.png.*decompression bomb"):
        load_dataset("folder", tmp_path)


def test_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match="needs a folder"):
        load_dataset("folder")
    with pytest.raises(DatasetError, match="no PNG or JPEG"):
        load_dataset("folder", tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("folder", tmp_path / "missing")
    with pytest.raises(DatasetError, match="cannot be downloaded"):
        load_dataset("folder", tmp_path, download=True)


# --- digits and toys -------------------------------------------------------------------------
def test_digits():
    parts = {s: load_dataset("digits", split=s) for s in ("train", "val", "test")}
    assert sum(len(p) for p in parts.values()) == 1797
    for p in parts.values():
        assert p.n_bins == 17 and p.shape == (1, 8, 8) and p.images.dtype == torch.uint8
        assert int(p.images.max()) <= 16
    assert int(parts["train"].images.max()) == 16
    keys = {
        s: {p.images[i].numpy().tobytes() + bytes([int(p.labels[i])]) for i in range(len(p))}
        for s, p in parts.items()
    }
    # sklearn digits hold a few exact duplicates; disjointness is checked on indices below
    assert len(keys["test"] & keys["train"]) < 5
    other_seed = load_dataset("digits", split="test", seed=3)
    assert torch.equal(other_seed.images, parts["test"].images)  # test set ignores the seed
    assert not torch.equal(load_dataset("digits", split="val", seed=3).images, parts["val"].images)


def test_digits_split_indices_are_disjoint():
    from invertible.data.splits import three_way_indices

    idx = {s: three_way_indices(1797, s, 0.1, 7) for s in ("train", "val", "test")}
    assert sorted(np.concatenate(list(idx.values())).tolist()) == list(range(1797))


@pytest.mark.parametrize("name", ["moons", "rings"])
def test_toys_are_deterministic_per_seed_and_split(name):
    a = load_dataset(name)
    assert isinstance(a, VectorData) and a.data.shape == (10000, 2)
    assert a.data.dtype == torch.float32 and torch.isfinite(a.data).all()
    assert torch.equal(a.data, load_dataset(name).data)
    assert not torch.equal(a.data[:2000], load_dataset(name, split="test").data)
    assert not torch.equal(a.data, load_dataset(name, seed=1).data)
    assert load_dataset(name, split="val", n_samples=17).data.shape == (17, 2)
    # centred, with the spread of the documented shapes (10000 points: the mean's standard
    # error is <= 0.011; rings: sqrt(sum_i p_i (r_i^2 + 0.08^2) / 2) = 1.12)
    torch.testing.assert_close(a.data.mean(0), torch.zeros(2), atol=0.05, rtol=0)
    std = {"moons": [0.87, 0.50], "rings": [1.12, 1.12]}[name]
    torch.testing.assert_close(a.data.std(0), torch.tensor(std), atol=0.03, rtol=0)


def test_rings_have_their_radii():
    x = load_dataset("rings", n_samples=4000).data
    r = x.norm(dim=1)
    radii = torch.tensor([0.5, 1.0, 1.5, 2.0])
    nearest = (r[:, None] - radii).abs().argmin(1)
    # each ring holds a share proportional to its circumference (binomial sd <= 0.008)
    share = torch.bincount(nearest, minlength=4) / len(r)
    torch.testing.assert_close(share, radii / radii.sum(), atol=0.025, rtol=0)
    # radial noise N(0, 0.08^2) around the ring (sd of the estimated sd ~0.001)
    offset = r - radii[nearest]
    assert abs(offset.mean().item()) < 0.01 and abs(offset.std().item() - 0.08) < 0.005
    # uniform angles: a quarter of the points in each quadrant
    quadrant = (x[:, 0] < 0).long() * 2 + (x[:, 1] < 0).long()
    torch.testing.assert_close(
        torch.bincount(quadrant, minlength=4) / len(r), torch.full((4,), 0.25), atol=0.03, rtol=0
    )


# --- arguments -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "imagenet"}, "unknown dataset 'imagenet'; choose from digits"),
        ({"name": "digits", "split": "validation"}, "unknown split"),
        ({"name": "digits", "val_fraction": 1.0}, "val_fraction"),
        ({"name": "digits", "val_fraction": -0.1}, "val_fraction"),
        ({"name": "digits", "seed": -1}, "seed"),
        ({"name": "digits", "image_size": 0}, "image_size"),
        ({"name": "digits", "image_size": (3, 4, 5)}, "image_size"),
        ({"name": "digits", "n_samples": 0}, "n_samples"),
        ({"name": "moons", "image_size": 8}, "vector data"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(DatasetError, match=message) as info:
        load_dataset(**kwargs)
    assert "\n" not in str(info.value)


def test_dataset_names():
    assert DATASETS == ("digits", "mnist", "fashion-mnist", "cifar10", "folder", "moons", "rings",
                        "checkerboard")


def test_gzip_bomb_is_bounded_by_the_header(tmp_path):
    # a tiny gz file expanding to 64 MB behind a header that claims 36 bytes per image
    header = idx_bytes(np.zeros((1, 6, 6), np.uint8))
    (tmp_path / f"{TRAIN_IMG}.gz").write_bytes(gzip.compress(header + bytes(64 << 20)))
    write_bytes(tmp_path / TRAIN_LAB, idx_bytes(np.zeros(1, np.uint8)), gz=True)
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match="trailing data"):
            load_dataset("mnist", tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20
