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
    ``context_shape`` (default none: unconditional) makes it a conditional case: every check
    passes a float64 context of shape ``(B, *context_shape)`` drawn per row by ``contexts``,
    ``(B, K)`` or, for image layers, ``(B, K, H, W)``.
    """

    name: str
    make: Callable[[], Bijection]
    shape: Sequence[int]
    prepare: Callable[[nn.Module], None] = perturb_parameters
    sample: Callable[[int, Sequence[int]], Tensor] | None = None
    bad_shapes: Sequence[Sequence[int]] = field(default_factory=list)
    batch: int = 3
    jacobian: bool = True  # False only where D is too large for a dense Jacobian
    context_shape: Sequence[int] = ()

    @property
    def conditional(self) -> bool:
        return len(self.context_shape) > 0

    def inputs(self, batch: int | None = None) -> Tensor:
        b = self.batch if batch is None else batch
        if self.sample is not None:
            return self.sample(b, tuple(self.shape)).to(torch.float64)
        return torch.randn(b, *self.shape, dtype=torch.float64)

    def contexts(self, batch: int | None = None) -> Tensor | None:
        """A different float64 context per row ``(B, *context_shape)``; None if unconditional."""
        if not self.conditional:
            return None
        b = self.batch if batch is None else batch
        return torch.randn(b, *self.context_shape, dtype=torch.float64)

    def build(self, seed: int = 0) -> Bijection:
        """A float64 module, moved off identity init, in eval mode (deterministic)."""
        torch.manual_seed(seed)
        module = self.make().to(torch.float64)
        self.prepare(module)
        return module.eval()


def assert_gradients_match(run: Callable[[Tensor], tuple[Tensor, Tensor]], x: Tensor,
                           params: Sequence[tuple[str, Tensor]]) -> None:
    """Autograd's gradient of every tensor in ``params`` matches a central finite difference.

    ``run(x) -> (out, logabsdet)``; the loss is ``<out, w> + sum(logabsdet)`` for a random
    ``w``. Each tensor is moved along its own random direction ``d`` by +-1e-6 and
    ``(L+ - L-) / 2e-6`` is compared with ``<grad, d>`` (float64). The input's gradient must
    exist and be finite.
    """
    x = x.detach().requires_grad_(True)
    out, ld = run(x)
    weights = torch.randn_like(out)

    def loss() -> float:
        # With autograd on, as in training (no cached factorisations).
        out, ld = run(x.detach())
        return ((out * weights).sum() + ld.sum()).item()

    ((out * weights).sum() + ld.sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all(), "input gradient is broken"
    eps = 1e-6
    for name, p in params:
        assert p.grad is not None, f"parameter {name} received no gradient"
        assert torch.isfinite(p.grad).all(), f"parameter {name} has non-finite gradient"
        d = torch.randn_like(p)
        with torch.no_grad():
            p.add_(eps * d)
        up = loss()
        with torch.no_grad():
            p.sub_(2 * eps * d)
        down = loss()
        with torch.no_grad():
            p.add_(eps * d)
        numeric = (up - down) / (2 * eps)
        analytic = (p.grad * d).sum().item()
        assert abs(numeric) > 1e-6, f"parameter {name} does not affect the output"
        assert abs(analytic - numeric) <= 1e-5 * abs(numeric) + 1e-7, (
            f"parameter {name}: autograd {analytic:.10g}, finite difference {numeric:.10g}"
        )


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
