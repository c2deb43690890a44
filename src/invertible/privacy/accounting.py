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

    def epsilon(self, steps: int | None = None) -> float:
        """The epsilon spent after ``steps`` steps (default all of them)."""
        return spent_epsilon(self.noise_multiplier, self.sample_rate,
                             self.steps if steps is None else steps, self.delta, self.accountant)


def _check_accountant(name: str) -> None:
    if name not in ACCOUNTANTS:
        raise ValueError(f"accountant must be one of {', '.join(ACCOUNTANTS)}, got {name!r}")


def noise_multiplier_for(epsilon: float, delta: float, sample_rate: float, steps: int,
                         accountant: str = "rdp") -> float:
    """The smallest sigma (to opacus's tolerance of 0.01 in epsilon) for which ``steps`` steps
    at rate ``sample_rate`` spend at most ``epsilon`` at ``delta``."""
    from opacus.accountants.utils import get_noise_multiplier

    _check_accountant(accountant)
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise ValueError(f"epsilon must be positive and finite, got {epsilon}")
    with warnings.catch_warnings():
        # The search tries sigmas far from the answer, whose optimal order may lie at the
        # largest one tried; only the final figure's bound matters (spent_epsilon warns).
        warnings.simplefilter("ignore", UserWarning)
        return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta,
                                          sample_rate=sample_rate, steps=steps,
                                          accountant=accountant, **_options(accountant)))


def spent_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float,
                  accountant: str = "rdp") -> float:
    """Epsilon at ``delta`` after ``steps`` DP-SGD steps (0 steps: 0)."""
    from opacus.accountants import PRVAccountant, RDPAccountant

    _check_accountant(accountant)
    if steps <= 0:
        return 0.0
    acc = RDPAccountant() if accountant == "rdp" else PRVAccountant()
    # The history is (sigma, q, steps) per phase; one phase here, as if stepped `steps` times.
    acc.history = [(noise_multiplier, sample_rate, steps)]
    return float(acc.get_epsilon(delta, **_options(accountant)))
