"""The registry of bijections that the generic exactness test runs.

Each module in ``tests/cases/`` defines ``CASES: list[Case]``. Every public ``Bijection``
subclass exported from ``invertible`` must appear (possibly nested) in at least one case.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from invertible import Bijection


def perturb_parameters(module: nn.Module, scale: float = 0.1) -> None:
    """Move every parameter off its (often identity) init, deterministically per seed."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))


@dataclass
class Case:
    """One configuration of a bijection for the generic checks.

    ``make`` builds a fresh module; ``shape`` is the event shape (without batch).
    ``prepare`` moves the module off its identity init (default: perturb parameters).
    ``sample`` draws valid float64 inputs of shape ``(B, *shape)`` (default: N(0, 1)).
    ``bad_shapes`` are event shapes the layer must reject with ``InvalidInputError``.
    """

    name: str
    make: Callable[[], Bijection]
    shape: Sequence[int]
    prepare: Callable[[nn.Module], None] = perturb_parameters
    sample: Callable[[int, Sequence[int]], Tensor] | None = None
    bad_shapes: Sequence[Sequence[int]] = field(default_factory=list)
    batch: int = 3
    jacobian: bool = True  # False only where D is too large for a dense Jacobian

    def inputs(self, batch: int | None = None) -> Tensor:
        b = self.batch if batch is None else batch
        if self.sample is not None:
            return self.sample(b, tuple(self.shape)).to(torch.float64)
        return torch.randn(b, *self.shape, dtype=torch.float64)

    def build(self, seed: int = 0) -> Bijection:
        """A float64 module, moved off identity init, in eval mode (deterministic)."""
        torch.manual_seed(seed)
        module = self.make().to(torch.float64)
        self.prepare(module)
        return module.eval()


def all_cases() -> list[Case]:
    import cases  # tests/cases, put on the path by conftest

    found: list[Case] = []
    for info in sorted(pkgutil.iter_modules(cases.__path__), key=lambda i: i.name):
        mod = importlib.import_module(f"cases.{info.name}")
        found.extend(getattr(mod, "CASES", []))
    names = [c.name for c in found]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise RuntimeError(f"duplicate registry case names: {sorted(dup)}")
    return found
