"""Downloads against a local HTTP server on 127.0.0.1 (no real network is used)."""

from __future__ import annotations

import hashlib
import socket
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from invertible.data import DatasetError, load_dataset
from invertible.data import download as dl

from data_fakes import cifar_archive, write_cifar_dir, write_mnist_dir

GZ = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


class Server:
    """Serves ``folder`` over HTTP on an ephemeral port and records the paths requested."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.requests: list[str] = []
        log = self.requests

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                log.append(self.path)
                super().do_GET()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=folder))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server(tmp_path):
    (tmp_path / "srv").mkdir()
    s = Server(tmp_path / "srv")
    yield s
    s.close()


@pytest.fixture
def fake_mnist(server):
    arrays = write_mnist_dir(server.folder)
    return arrays, {name: md5(server.folder / name) for name in GZ}


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def test_download_succeeds_with_matching_checksums(tmp_path, server, fake_mnist):
    arrays, table = fake_mnist
    root = tmp_path / "data" / "mnist"
    assert dl.download("mnist", root, mirror=server.url, md5s=table) == root
    assert listing(root) == sorted(GZ)  # no temporary files left behind
    for name in GZ:
        assert (root / name).read_bytes() == (server.folder / name).read_bytes()
    test = load_dataset("mnist", root, "test")
    np.testing.assert_array_equal(test.images[:, 0].numpy(), arrays["test"][0])

    # verified files are kept, not fetched again
    server.requests.clear()
    dl.download("mnist", root, mirror=server.url, md5s=table)
    assert server.requests == []


def test_real_mnist_files_match_the_published_checksums(tmp_path, mnist_dir):
    served = Server(mnist_dir)  # the original files, served as a mirror would
    try:
        root = dl.download("mnist", tmp_path / "m", mirror=served.url)
    finally:
        served.close()
    assert listing(root) == sorted(GZ)
    assert len(load_dataset("mnist", root, "test")) == 10000


def test_load_dataset_download_uses_env_mirror_and_table(tmp_path, server, fake_mnist, monkeypatch):
    _, table = fake_mnist
    monkeypatch.setenv(dl.MIRROR_ENV, server.url)
    monkeypatch.setitem(dl.RESOURCES, "fashion-mnist", table)
    d = load_dataset("fashion-mnist", tmp_path / "fm", "train", download=True)
    assert len(d) == 54 and d.name == "fashion-mnist"
    assert sorted(p.lstrip("/") for p in server.requests) == sorted(GZ)


def test_checksum_mismatch_is_an_error_and_leaves_no_file(tmp_path, server, fake_mnist):
    _, table = fake_mnist
    bad = dict(table, **{GZ[2]: "0" * 32})
    root = tmp_path / "mnist"
    with pytest.raises(DatasetError, match=rf"{GZ[2]}.*md5 {table[GZ[2]]} does not match"):
        dl.download("mnist", root, mirror=server.url, md5s=bad)
    assert GZ[2] not in listing(root)
    assert not [n for n in listing(root) if n.endswith(".part")]


def test_server_404_is_an_error_and_leaves_no_file(tmp_path, server):
    root = tmp_path / "mnist"
    with pytest.raises(DatasetError, match="HTTP 404") as info:
        dl.download("mnist", root, mirror=server.url)
    assert "\n" not in str(info.value)
    assert listing(root) == []


def test_unreachable_server_is_a_one_line_error(tmp_path):
    with socket.socket() as s:  # a port nobody listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DatasetError, match="download of .* failed") as info:
        dl.download("mnist", tmp_path / "m", mirror=f"http://127.0.0.1:{port}", timeout=5)
    assert "\n" not in str(info.value)
    assert listing(tmp_path / "m") == []


def test_next_mirror_is_tried_after_a_failure(tmp_path, server, fake_mnist, monkeypatch):
    _, table = fake_mnist
    monkeypatch.delenv(dl.MIRROR_ENV, raising=False)
    monkeypatch.setitem(dl.MIRRORS, "mnist", (server.url + "missing/", server.url))
    dl.download("mnist", tmp_path / "m", md5s=table)
    assert listing(tmp_path / "m") == sorted(GZ)


def test_existing_unverified_file_is_never_overwritten(tmp_path, server, fake_mnist):
    _, table = fake_mnist
    root = tmp_path / "m"
    root.mkdir()
    (root / GZ[0]).write_bytes(b"the user's own file")
    with pytest.raises(DatasetError, match=rf"{GZ[0]} exists but its md5"):
        dl.download("mnist", root, mirror=server.url, md5s=table)
    assert (root / GZ[0]).read_bytes() == b"the user's own file"


def test_cifar_archive_is_verified_and_only_batches_extracted(tmp_path, server):
    arrays = write_cifar_dir(tmp_path / "bins")
    archive = cifar_archive(
        server.folder / dl.CIFAR_ARCHIVE,
        tmp_path / "bins",
        extra={"../evil.bin": b"x" * 3073, "/abs.bin": b"y"},
    )
    root = tmp_path / "cifar"
    table = {dl.CIFAR_ARCHIVE: md5(archive)}
    dl.download("cifar10", root, mirror=server.url, md5s=table)
    assert listing(root / "cifar-10-batches-bin") == sorted(
        [*(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin"]
    )
    # "../evil.bin" would land beside root: nothing new appears there, nor at /abs.bin
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bins", "cifar", "srv"]
    assert not Path("/abs.bin").exists()
    test = load_dataset("cifar10", root, "test")
    np.testing.assert_array_equal(test.images.numpy(), arrays["test"][0])
    with pytest.raises(DatasetError, match="does not match"):
        dl.download("cifar10", tmp_path / "c2", mirror=server.url, md5s={dl.CIFAR_ARCHIVE: "0"})
    assert listing(tmp_path / "c2") == []


def test_cifar_archive_with_symlink_member_is_refused(tmp_path, server):
    write_cifar_dir(tmp_path / "bins")
    archive = cifar_archive(
        server.folder / dl.CIFAR_ARCHIVE, tmp_path / "bins", symlink="data_batch_3.bin"
    )
    root = tmp_path / "cifar"
    with pytest.raises(DatasetError, match="data_batch_3.bin is not a CIFAR-10 batch"):
        dl.download("cifar10", root, mirror=server.url, md5s={dl.CIFAR_ARCHIVE: md5(archive)})
    assert not (root / "cifar-10-batches-bin" / "data_batch_3.bin").exists()
    # no link and no temporary file anywhere under root: only regular files were written
    assert not [p for p in root.rglob("*") if p.is_symlink() or p.name.endswith(".part")]


# The published md5 sums: MNIST and Fashion-MNIST as torchvision checks them (MNIST also in
# ../shared/data/README.md, and test_real_mnist_files_match_the_published_checksums checks the
# real files), CIFAR-10 binary from https://www.cs.toronto.edu/~kriz/cifar.html.
PUBLISHED = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "cifar10": {"cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530"},
}


def test_published_checksum_tables():
    assert dl.RESOURCES == PUBLISHED
    assert dl.CIFAR_ARCHIVE == "cifar-10-binary.tar.gz"
