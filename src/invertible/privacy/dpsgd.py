"""DP-SGD for an objective: Poisson batches, per-sample gradients, clipping and noise.

Per-sample gradients come from ``torch.func`` (``vmap`` over ``grad`` of the objective's loss
on one example), not from opacus's module hooks: those need layers with one tensor output
and a registered gradient sampler, and our bijections return ``(z, logabsdet)`` and own
their parameters (ActNorm, LU 1x1 convolutions). Everything else is opacus's: its
``DPOptimizer`` clips every per-sample gradient to norm ``C``, sums them and adds Gaussian
noise of standard deviation ``sigma * C``; its accountant calibrates ``sigma`` and reports
the spent epsilon (``invertible.privacy.accounting``).

What the guarantee covers, and what it assumes:
- example-level (epsilon, delta)-DP of the released weights with respect to the *training*
  split, labels included; the validation split never enters a gradient, but it is not
  accounted either, so a DP run keeps its final weights as "best" (no selection by it);
- the batches are Poisson samples at rate ``q = batch_size / n_train`` (a batch's size
  varies), drawn from a generator seeded by the run's seed and the step so that a resumed
  run is exact; amplification by subsampling assumes that seed stays secret;
- no unaccounted data-dependent initialisation: the first ActNorm starts from a
  Gaussian-mechanism estimate of its input statistics, composed into the budget
  (``invertible.privacy.private_init``), the others at the identity;
- the noise is torch's Gaussian, not opacus's ``secure_mode`` (floating-point attacks on
  the noise, Mironov 2012, are out of scope).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from .accounting import DPBudget, noise_multiplier_for
from .private_init import InitQuery

__all__ = ["DPSGD", "per_sample_gradients", "skip_data_dependent_init"]


def skip_data_dependent_init(module: nn.Module) -> int:
    """Mark every data-initialised layer (ActNorm) as initialised, at its identity start, so
    that it never looks at data; returns how many layers were marked."""
    marked = 0
    for m in module.modules():
        mark = getattr(m, "mark_initialized", None)
        if callable(mark):
            mark()
            marked += 1
    return marked


def per_sample_gradients(
    module: nn.Module, x: Tensor, y: Tensor | None = None, loss_key: str = "loss"
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Gradients of ``module(x_i, y_i)[loss_key]`` for each example ``i`` separately.

    ``module`` maps a batch ``(B, ...)`` (and labels ``(B,)`` or None) to a dict of per-sample
    ``(B,)`` metrics, as objectives do. Returns ``({param name: (B, *param.shape)},
    {metric: (B,)})``; randomness inside (dequantization noise) differs per example.
    Buffers are read, never updated: call ``skip_data_dependent_init`` first.
    """
    params = {n: p.detach() for n, p in module.named_parameters() if p.requires_grad}
    buffers = dict(module.named_buffers())

    def one(p: dict[str, Tensor], xi: Tensor, yi: Tensor | None) -> tuple[Tensor, Any]:
        out = functional_call(module, (p, buffers),
                              (xi[None], None if yi is None else yi[None]))
        return out[loss_key].sum(), {k: v.detach().reshape(()) for k, v in out.items()}

    y_dim = None if y is None else 0
    fn = vmap(grad(one, has_aux=True), in_dims=(None, 0, y_dim), randomness="different")
    grads, metrics = fn(params, x, y)
    return grads, metrics


class DPSGD:
    """DP-SGD on ``objective``'s trainable parameters, stepping ``optimizer`` (any torch
    optimizer, e.g. Adam: the noise is added to the gradient it then uses).

    ``sigma`` is calibrated so that ``steps`` steps at ``q = batch_size / n_train`` spend
    ``epsilon`` at ``delta``. ``chunk`` examples go through ``vmap`` at once (memory:
    ``chunk`` copies of the gradient). ``init``: the private ActNorm init the run performs
    on the same data before the steps (``planned_init``), composed into the budget.
    """

    def __init__(self, objective: nn.Module, optimizer: torch.optim.Optimizer, *,
                 epsilon: float, delta: float, max_grad_norm: float, n_train: int,
                 batch_size: int, steps: int, accountant: str = "rdp",
                 chunk: int = 64, init: InitQuery | None = None) -> None:
        from opacus.optimizers import DPOptimizer

        if not 0 < batch_size <= n_train:
            raise ValueError(f"batch size {batch_size} must lie in [1, {n_train}]")
        q = batch_size / n_train
        prior = (init.history(),) if init is not None else ()
        sigma = noise_multiplier_for(epsilon, delta, q, steps, accountant, prior)
        self.budget = DPBudget(sigma, q, steps, max_grad_norm, delta, accountant, prior)
        #: The private ActNorm init the run performs, or None.
        self.init = init
        self.target_epsilon = float(epsilon)
        self.objective = objective
        self.chunk = int(chunk)
        self.n_train = int(n_train)
        # Any: opacus keeps its per-sample state in attributes it adds to the parameters.
        self.params: list[Any] = [p for p in objective.parameters() if p.requires_grad]
        self._dp = DPOptimizer(optimizer, noise_multiplier=sigma, max_grad_norm=max_grad_norm,
                               expected_batch_size=batch_size)
        #: Examples whose loss or gradient was not finite (they contribute zero).
        self.nonfinite_examples = 0

    def batch_indices(self, step: int, seed: int) -> Tensor:
        """The Poisson batch of ``step``: each training index independently with rate q."""
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        return torch.nonzero(torch.rand(self.n_train, generator=g) < self.budget.sample_rate
                             ).flatten()

    def gradients(self, x: Tensor, y: Tensor | None,
                  metric_names: list[str]) -> dict[str, Tensor]:
        """Set every parameter's ``.grad`` to the clipped, noised, averaged gradient of the
        batch; return the per-sample metrics ``{name: (B,)}`` (empty for an empty batch)."""
        names = [n for n, p in self.objective.named_parameters() if p.requires_grad]
        chunks: list[dict[str, Tensor]] = []
        for p in self.params:
            p.summed_grad = torch.zeros_like(p)  # an empty Poisson batch adds noise only
        for s in range(0, len(x), self.chunk):
            xs = x[s : s + self.chunk]
            ys = None if y is None else y[s : s + self.chunk]
            grads, metrics = per_sample_gradients(self.objective, xs, ys)
            flat = torch.cat([grads[n].reshape(len(xs), -1) for n in names], dim=1)
            ok = torch.isfinite(flat).all(dim=1) & torch.isfinite(metrics["loss"])
            self.nonfinite_examples += int((~ok).sum())
            for n, p in zip(names, self.params, strict=True):
                g = grads[n]
                p.grad_sample = torch.where(ok.view(-1, *([1] * p.dim())), g,
                                            torch.zeros_like(g))
            self._dp.clip_and_accumulate()
            chunks.append({k: v[ok] for k, v in metrics.items()})  # finite rows only
        for p in self.params:
            if not hasattr(p, "grad_sample") or p.grad_sample is None:
                p.grad_sample = p.summed_grad[None]  # only read for its count by scale_grad
        self._dp.add_noise()
        self._dp.scale_grad()
        for p in self.params:  # opacus's bookkeeping must not reach checkpoints or EMA copies
            p.grad_sample = None
            p.summed_grad = None
        if not chunks:
            return {k: torch.zeros(0, device=x.device) for k in metric_names}
        return {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]}

    def epsilon(self, steps: int) -> float:
        """Epsilon spent after ``steps`` of this run's steps."""
        return self.budget.epsilon(steps)

    def summary(self, steps: int) -> dict[str, Any]:
        """What a run records of its privacy after ``steps`` steps."""
        b = self.budget
        return {"epsilon_target": self.target_epsilon, "epsilon_spent": self.epsilon(steps),
                "delta": b.delta, "noise_multiplier": b.noise_multiplier,
                "sample_rate": b.sample_rate, "max_grad_norm": b.max_grad_norm,
                "steps": steps, "steps_planned": b.steps, "accountant": b.accountant,
                "prior_mechanisms": [list(m) for m in b.prior],
                "nonfinite_examples": self.nonfinite_examples}
