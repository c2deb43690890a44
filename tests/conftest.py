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


@pytest.fixture
def mnist_dir() -> Path:
    """The MNIST IDX files beside the checkout; skips with a reason when absent."""
    d = SHARED_DATA / "mnist"
    if not (d / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST files not found at {d} (../shared/data/mnist beside the repo)")
    return d
