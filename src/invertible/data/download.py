"""Fetch MNIST, Fashion-MNIST and the CIFAR-10 binary archive, verifying published md5s.

Guarantees: a file is written to a temporary name in the target folder and moved into
place with ``os.replace`` only after its md5 matches; partial files are removed on any
failure; an existing file is never overwritten (a verified one is kept, an unverified one
is an error the user resolves); every failure is a one-line :class:`DatasetError`.

Mirrors are tried in order. ``$INVERTIBLE_MIRROR`` (or the ``mirror`` argument) replaces
them with one base URL under which the files keep their original names, e.g. a local copy
or a test server.

Checksums (md5, as published):
- MNIST: listed in ../shared/data/README.md and in torchvision's ``datasets/mnist.py``.
- Fashion-MNIST: the zalandoresearch/fashion-mnist README and torchvision's
  ``datasets/mnist.py`` (``FashionMNIST.resources``).
- CIFAR-10 binary version: https://www.cs.toronto.edu/~kriz/cifar.html (torchvision uses
  the pickled Python version, which we do not load).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path

from .base import DatasetError
from .cifar import BIN_DIR, RECORD, TEST_FILES, TRAIN_FILES
from .idx import GZ_NAMES

MIRROR_ENV = "INVERTIBLE_MIRROR"

MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/",),
}

RESOURCES: dict[str, dict[str, str]] = {
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
assert set(RESOURCES["mnist"]) == set(GZ_NAMES)

CIFAR_ARCHIVE = "cifar-10-binary.tar.gz"
# The largest file we fetch is the 162 MB CIFAR archive; a server sending more is broken.
MAX_DOWNLOAD_BYTES = 1 << 30
_CHUNK = 1 << 20
_NET_ERRORS = (urllib.error.URLError, http.client.HTTPException, OSError, ValueError)


def md5_of(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def mirrors_for(name: str, mirror: str | None = None) -> tuple[str, ...]:
    override = mirror or os.environ.get(MIRROR_ENV)
    if override:
        return (override.rstrip("/") + "/",)
    return MIRRORS[name]


class _Failed(Exception):
    pass


def _fetch_one(url: str, dest: Path, md5: str, timeout: float) -> None:
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        h = hashlib.md5(usedforsecurity=False)
        n = 0
        with os.fdopen(fd, "wb") as out:
            req = urllib.request.Request(url, headers={"User-Agent": "invertible"})
            try:
                with urllib.request.urlopen(req, timeout=timeout) as resp:
                    while chunk := resp.read(_CHUNK):
                        n += len(chunk)
                        if n > MAX_DOWNLOAD_BYTES:
                            raise _Failed(f"{url} sent more than {MAX_DOWNLOAD_BYTES} bytes")
                        h.update(chunk)
                        out.write(chunk)
            except urllib.error.HTTPError as e:
                raise _Failed(f"{url}: HTTP {e.code} {e.reason}") from None
            except urllib.error.URLError as e:
                raise _Failed(f"{url}: {e.reason}") from None
            except _NET_ERRORS as e:
                raise _Failed(f"{url}: {e}") from None
        if h.hexdigest() != md5:
            raise _Failed(f"{url}: md5 {h.hexdigest()} does not match the published {md5}")
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fetch(urls: Iterable[str], dest: Path, md5: str, timeout: float = 60.0) -> Path:
    """Download ``dest`` from the first working URL, verified; keep a verified existing one."""
    if dest.exists():
        found = md5_of(dest)
        if found == md5:
            return dest
        raise DatasetError(
            f"{dest} exists but its md5 {found} is not the published {md5}; "
            "move it away and download again"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        try:
            _fetch_one(url, dest, md5, timeout)
            return dest
        except _Failed as e:
            errors.append(str(e))
    raise DatasetError(f"download of {dest.name} failed: {'; '.join(errors)}")


def _extract_cifar(archive: Path, root: Path) -> None:
    """Extract only the expected ``.bin`` members, as regular files, atomically."""
    out_dir = root / BIN_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for fname in (*TRAIN_FILES, *TEST_FILES):
                dest = out_dir / fname
                if dest.exists():
                    continue
                try:
                    member = tar.getmember(f"{BIN_DIR}/{fname}")
                except KeyError:
                    raise DatasetError(f"{archive} lacks {BIN_DIR}/{fname}") from None
                if not member.isfile() or member.size % RECORD or member.size > 64 << 20:
                    raise DatasetError(
                        f"{archive}: member {member.name} is not a CIFAR-10 batch file"
                    )
                src = tar.extractfile(member)
                assert src is not None  # a regular file always has data
                fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{fname}.", suffix=".part")
                try:
                    with os.fdopen(fd, "wb") as out, src:
                        while chunk := src.read(_CHUNK):
                            out.write(chunk)
                    os.replace(tmp, dest)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise DatasetError(f"{archive}: corrupt archive ({e})") from None


def download(
    name: str,
    root: str | Path,
    *,
    mirror: str | None = None,
    md5s: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> Path:
    """Make ``root`` hold dataset ``name`` (mnist, fashion-mnist or cifar10); returns ``root``.

    ``md5s`` replaces the published checksum table (for tests serving fake files).
    """
    if name not in RESOURCES:
        raise DatasetError(
            f"dataset {name!r} cannot be downloaded; downloadable: {', '.join(RESOURCES)}"
        )
    root = Path(root).expanduser()
    table = dict(RESOURCES[name] if md5s is None else md5s)
    urls = mirrors_for(name, mirror)
    try:
        if name == "cifar10":
            bins = (*TRAIN_FILES, *TEST_FILES)
            if all((root / f).is_file() for f in bins) or all(
                (root / BIN_DIR / f).is_file() for f in bins
            ):
                return root
            archive = fetch(
                [u + CIFAR_ARCHIVE for u in urls],
                root / CIFAR_ARCHIVE,
                table[CIFAR_ARCHIVE],
                timeout,
            )
            _extract_cifar(archive, root)
            return root
        for fname, md5 in table.items():
            raw = root / fname.removesuffix(".gz")
            if raw.is_file() and not (root / fname).exists():
                continue  # the user keeps un-gzipped files; the loader validates them
            fetch([u + fname for u in urls], root / fname, md5, timeout)
    except OSError as e:  # e.g. the folder cannot be created or written
        raise DatasetError(f"cannot write into {root}: {e.strerror or e}") from None
    return root
