import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SHARED_DATA = HERE.parent.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session", autouse=True)
def _user_cache(tmp_path_factory):
    """Point the user cache (``$INVERTIBLE_DATA``: downloads, score classifiers) at a folder
    of this session, so tests neither read nor fill the real one."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INVERTIBLE_DATA", str(tmp_path_factory.mktemp("user-cache")))
        yield


@pytest.fixture
def one_thread():
    """Run on one intra-op thread (restored afterwards); modules opt in with ``usefixtures``.

    The CI machine has 2 cores, often shared: two OpenMP threads then wait on each other.
    Measured with one other busy process: tests/test_exactness.py 22 s on two threads, 13 s
    on one; at a load of ~4 the digits i-ConvNet training took 106 s on two threads, ~8 s on one.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def single_thread():
    """``one_thread`` for module-scoped fixtures, which run before function-scoped ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def mnist_dir() -> Path:
    """The MNIST IDX files beside the checkout; skips with a reason when absent."""
    d = SHARED_DATA / "mnist"
    if not (d / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST files not found at {d} (../shared/data/mnist beside the repo)")
    return d
