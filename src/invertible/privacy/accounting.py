"""The privacy budget of DP-SGD: noise calibration and the spent epsilon, by opacus's accountants.

DP-SGD with Poisson sampling at rate ``q`` for ``steps`` steps with noise multiplier ``sigma``
is ``(epsilon, delta)``-differentially private with respect to adding or removing one
training example (Abadi et al., 2016). Both directions go through opacus: the RDP accountant
(Mironov, 2017; the default) or the PRV accountant (Gopi et al., 2021), so that our figures
are the ones opacus users get for the same setting.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["ACCOUNTANTS", "DPBudget", "noise_multiplier_for", "spent_epsilon"]

ACCOUNTANTS = ("rdp", "prv")
# opacus's default RDP orders stop at 63; short runs at small sample rates find their
# optimum above it (opacus then warns that the bound is loose), so the search goes on to 256.
RDP_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + list(
    range(64, 257, 8))


def _options(accountant: str) -> dict[str, object]:
    return {"alphas": RDP_ORDERS} if accountant == "rdp" else {}


@dataclass(frozen=True)
class DPBudget:
    """A DP-SGD setting: ``noise_multiplier`` (sigma), Poisson ``sample_rate`` (q), ``steps``,
    per-sample clipping bound ``max_grad_norm`` (C), ``delta`` and the ``accountant``."""

    noise_multiplier: float
    sample_rate: float
    steps: int
    max_grad_norm: float
    delta: float
    accountant: str = "rdp"
    #: Mechanisms run before the steps, as ``(sigma, q, count)`` (the private ActNorm init).
    prior: tuple[tuple[float, float, int], ...] = ()

    def epsilon(self, steps: int | None = None) -> float:
        """The epsilon spent after the prior mechanisms and ``steps`` steps (default all)."""
        return spent_epsilon(self.noise_multiplier, self.sample_rate,
                             self.steps if steps is None else steps, self.delta, self.accountant,
                             self.prior)


def _check_accountant(name: str) -> None:
    if name not in ACCOUNTANTS:
        raise ValueError(f"accountant must be one of {', '.join(ACCOUNTANTS)}, got {name!r}")


def noise_multiplier_for(epsilon: float, delta: float, sample_rate: float, steps: int,
                         accountant: str = "rdp",
                         prior: Sequence[tuple[float, float, int]] = ()) -> float:
    """The smallest sigma (to opacus's tolerance of 0.01 in epsilon) for which ``steps`` steps
    at rate ``sample_rate``, after the ``prior`` mechanisms, spend at most ``epsilon`` at
    ``delta``. Without a prior this is opacus's ``get_noise_multiplier``."""
    from opacus.accountants.utils import get_noise_multiplier

    _check_accountant(accountant)
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise ValueError(f"epsilon must be positive and finite, got {epsilon}")
    if prior:
        return _bisect_sigma(epsilon, delta, sample_rate, steps, accountant, tuple(prior))
    with warnings.catch_warnings():
        # The search tries sigmas far from the answer, whose optimal order may lie at the
        # largest one tried; only the final figure's bound matters (spent_epsilon warns).
        warnings.simplefilter("ignore", UserWarning)
        return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta,
                                          sample_rate=sample_rate, steps=steps,
                                          accountant=accountant, **_options(accountant)))


def _bisect_sigma(epsilon: float, delta: float, q: float, steps: int, accountant: str,
                  prior: tuple[tuple[float, float, int], ...]) -> float:
    """opacus's search (double, then bisect to 0.01 in epsilon) over a composed history."""
    floor = spent_epsilon(1e6, q, 0, delta, accountant, prior)
    if floor >= epsilon:
        raise ValueError(f"the mechanisms before training already spend epsilon {floor:.3g} "
                         f">= {epsilon:g}")
    lo, hi = 0.0, 10.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        eps_hi = math.inf
        while eps_hi > epsilon:
            hi *= 2
            if hi > 1e6:
                raise ValueError("the privacy budget is too low")
            eps_hi = spent_epsilon(hi, q, steps, delta, accountant, prior)
        while epsilon - eps_hi > 0.01:
            mid = (lo + hi) / 2
            eps = spent_epsilon(mid, q, steps, delta, accountant, prior)
            if eps < epsilon:
                hi, eps_hi = mid, eps
            else:
                lo = mid
    return hi


def spent_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float,
                  accountant: str = "rdp",
                  prior: Sequence[tuple[float, float, int]] = ()) -> float:
    """Epsilon at ``delta`` after the ``prior`` mechanisms ``(sigma, q, count)`` and ``steps``
    DP-SGD steps (nothing run: 0)."""
    from opacus.accountants import PRVAccountant, RDPAccountant

    _check_accountant(accountant)
    # The history is (sigma, q, count) per phase, composed as if stepped one by one.
    history = [*prior, *([(noise_multiplier, sample_rate, steps)] if steps > 0 else [])]
    if not history:
        return 0.0
    acc = RDPAccountant() if accountant == "rdp" else PRVAccountant()
    acc.history = history
    return float(acc.get_epsilon(delta, **_options(accountant)))
