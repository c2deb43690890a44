"""The training configuration: one JSON-serialisable record per run (``RUN/config.json``)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ConfigError", "TrainConfig"]


class ConfigError(ValueError):
    """An impossible or inconsistent setting (one-line message for the user)."""


@dataclass
class TrainConfig:
    """Everything that defines a training run.

    ``batch_size`` is per process: under ``torchrun`` with N processes the global batch is
    ``N * batch_size`` and one step consumes that many images. ``epochs``, ``steps`` and
    ``max_time`` are budgets; training stops at whichever comes first (at least one is set).
    ``ema`` is the EMA decay (0 disables it). ``lr_decay_on_nonfinite`` multiplies the
    learning rate after every ``nonfinite_patience`` skipped (non-finite) steps.

    ``task`` names the objective (``density``, ...) and ``task_options`` its settings.
    ``val_every``: validate and checkpoint every N steps; None picks about ten per run, 0
    turns validation off (checkpoints are then written at the end only). ``sample_every``:
    None follows ``val_every``, 0 writes pictures at the end only. ``check_every``: how often
    the host reads the on-device finiteness flag of the steps (1: every step, exact skips).
    ``dp_epsilon``: train with DP-SGD (``invertible.privacy``) to this epsilon at
    ``dp_delta``, clipping every per-sample gradient to ``dp_max_grad_norm``; the noise is
    calibrated to the step budget by ``dp_accountant`` (rdp or prv); ``dp_chunk`` examples
    get their gradients at once (a memory knob). None: ordinary training.
    ``conditional``: the density task models ``p(x | label)``, the one-hot class label being
    the flow's context (the model is built with ``context_features`` = the class count).
    """

    task: str = "density"
    task_options: dict[str, Any] = field(default_factory=dict)
    conditional: bool = False
    data: str = "digits"
    data_dir: str | None = None
    download: bool = False
    val_fraction: float = 0.1
    image_size: int | None = None
    grayscale: bool | None = None
    model: str | None = None
    model_options: dict[str, Any] = field(default_factory=dict)
    epochs: int | None = None
    steps: int | None = None
    max_time: float | None = None
    batch_size: int = 64
    lr: float = 1e-3
    schedule: str = "cosine"
    warmup: int = 100
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "cpu"
    grad_clip: float | None = 50.0
    ema: float = 0.0
    amp: bool = False
    dequant: str = "uniform"
    val_every: int | None = None
    sample_every: int | None = None
    check_every: int = 1
    log_every: int = 10
    n_samples: int = 64
    nonfinite_patience: int = 3
    sv_clip_every: int = 1
    lr_decay_on_nonfinite: float = 0.5
    dp_epsilon: float | None = None
    dp_delta: float = 1e-5
    dp_max_grad_norm: float = 1.0
    dp_accountant: str = "rdp"
    dp_chunk: int = 64

    def validate(self) -> None:
        def positive(name: str, allow_none: bool = True) -> None:
            v = getattr(self, name)
            if v is None and allow_none:
                return
            if v is None or not v > 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {v}")

        for name in ("epochs", "steps", "max_time", "grad_clip", "image_size"):
            positive(name)
        for name in ("batch_size", "lr", "log_every", "n_samples", "nonfinite_patience",
                     "check_every"):
            positive(name, allow_none=False)
        for name in ("warmup", "val_every", "sample_every", "sv_clip_every"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0")
        if self.epochs is None and self.steps is None and self.max_time is None:
            raise ConfigError("give a budget: --epochs, --steps or --max-time")
        if self.schedule not in ("constant", "cosine"):
            raise ConfigError(f"--schedule must be constant or cosine, got {self.schedule}")
        if self.dequant not in ("uniform", "variational"):
            raise ConfigError(f"--dequant must be uniform or variational, got {self.dequant}")
        if not 0 <= self.ema < 1:
            raise ConfigError(f"--ema is a decay in [0, 1), got {self.ema}")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"--val-fraction must lie in (0, 1), got {self.val_fraction}")
        if not 0 < self.lr_decay_on_nonfinite <= 1:
            raise ConfigError("lr_decay_on_nonfinite must lie in (0, 1]")
        if self.weight_decay < 0:
            raise ConfigError("--weight-decay must be >= 0")
        if self.conditional and self.task != "density":
            raise ConfigError(f"--conditional is for --task density (a flow of the data given "
                              f"its class label), not --task {self.task}")

        if self.dp_epsilon is not None:
            self._validate_dp()

    def _validate_dp(self) -> None:
        import math

        eps = self.dp_epsilon
        assert eps is not None
        if not (eps > 0 and math.isfinite(eps)):
            raise ConfigError(f"--dp-epsilon must be positive and finite, got {eps} (for "
                              "non-private training leave out the --dp-* options)")
        if not 0 < self.dp_delta < 1:
            raise ConfigError(f"--dp-delta must lie in (0, 1), got {self.dp_delta}")
        if not (self.dp_max_grad_norm > 0 and math.isfinite(self.dp_max_grad_norm)):
            raise ConfigError(f"--dp-max-grad-norm must be positive and finite, got "
                              f"{self.dp_max_grad_norm}")
        if self.dp_accountant not in ("rdp", "prv"):
            raise ConfigError(f"--dp-accountant must be rdp or prv, got {self.dp_accountant}")
        if self.dp_chunk < 1:
            raise ConfigError(f"--dp-chunk must be positive, got {self.dp_chunk}")
        if self.epochs is None and self.steps is None:
            raise ConfigError("--dp-epsilon needs --epochs or --steps: the noise is calibrated "
                              "to the number of steps (--max-time may still stop it earlier)")
        if self.task != "density":
            raise ConfigError(f"--dp-epsilon trains --task density (a DP flow), not --task "
                              f"{self.task}")
        if self.amp:
            raise ConfigError("--dp-epsilon and --amp do not combine: per-sample gradients "
                              "run in full precision")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"config has unknown keys: {', '.join(sorted(unknown))}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)
