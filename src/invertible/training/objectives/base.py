"""The objective contract: what one task's loss, evaluation and run-folder pictures are.

The training loop (``invertible.training.loop``) owns steps, budgets, the optimizer and its
schedule, checkpoints and resume, DDP, EMA, progress and the metrics log. An ``Objective``
owns everything that depends on the task:

- ``forward(x, y)``: per-sample metrics of a batch, a dict of ``(B,)`` tensors with at least
  ``"loss"`` (the loop minimises its mean). Every entry is logged as ``train_<name>``.
- ``evaluate(split, ...)``: the mean of each metric over a split (``val_<name>`` during
  training); ``monitor`` names the one whose lowest value picks the "best" checkpoint.
- ``write_artifacts(folder, name, n, preview)``: what the run folder gets at each checkpoint
  (sample grids, reconstructions of ``preview``, held-out data); ``write_final``: the
  figures made once at the end (by default the checkpoint ones, named "final").
- ``sample(n, temperature)``: data drawn from the model, for tasks that can generate.

A new task is a subclass plus ``register_objective``; the loop does not change.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..distributed import DistInfo, all_reduce_sum

__all__ = ["EVAL_SEED", "SAMPLE_SEED", "DataSpec", "Objective", "TaskError", "fixed_rng",
           "seeded_samples"]

EVAL_SEED = 1234
SAMPLE_SEED = 4321


class TaskError(ValueError):
    """A request the run's task cannot honour (one-line message for the user)."""


@contextlib.contextmanager
def fixed_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Run a block with the global RNGs seeded to ``seed``, restoring them afterwards.

    Evaluation and sample grids use it so that they never disturb the training stream
    (a resumed run must draw the same noise as an uninterrupted one).
    """
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type):
        torch.manual_seed(seed)
        yield


class DataSpec:
    """What an objective knows of its data: ``kind`` ("image"/"vector"), event ``shape``,
    ``n_bins`` grey levels (images) and ``n_classes`` (labelled data)."""

    def __init__(self, kind: str, shape: tuple[int, ...], n_bins: int | None,
                 n_classes: int | None = None) -> None:
        self.kind = kind
        self.shape = tuple(int(s) for s in shape)
        self.n_bins = n_bins
        self.n_classes = n_classes

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> DataSpec:
        """From a run folder's ``data`` record (``Split.info()``)."""
        return cls(info["kind"], tuple(info["shape"]), info.get("n_bins"),
                   info.get("n_classes"))

    @property
    def dims(self) -> int:
        return math.prod(self.shape)


class Objective(nn.Module):
    """Base class of the training tasks; see the module docstring for the contract.

    Subclasses set ``task`` (the ``--task`` name) and implement ``forward``. The data
    description is kept as attributes (``kind``, ``shape``, ``n_bins``, ``dims``).
    """

    task: ClassVar[str] = ""
    monitor: ClassVar[str] = "loss"
    monitor_label: ClassVar[str] = "loss"
    #: Metric names shown on the progress bar, in order (a subset of ``forward``'s keys).
    progress_metrics: ClassVar[tuple[str, ...]] = ("loss",)

    def __init__(self, data: DataSpec) -> None:
        super().__init__()
        self.data = data
        self.kind = data.kind
        self.shape = data.shape
        self.n_bins = data.n_bins
        self.dims = data.dims

    # -- the task ---------------------------------------------------------------------------
    def forward(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        """Per-sample metrics of a batch: ``{name: (B,)}`` with at least ``"loss"``."""
        raise NotImplementedError

    @torch.no_grad()
    def init_from_data(self, x: Tensor, y: Tensor | None = None) -> None:
        """Data-dependent initialisation (e.g. ActNorm): one forward pass in train mode."""
        self.train()
        self(x, y)

    @property
    def device(self) -> torch.device:
        p = next(self.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        p = next(self.parameters(), None)
        return p.dtype if p is not None else torch.get_default_dtype()

    @torch.no_grad()
    def evaluate(self, split: Any, batch_size: int, dist_info: DistInfo | None = None,
                 seed: int = EVAL_SEED) -> dict[str, float]:
        """Mean of every metric over ``split`` (sharded over ranks), in eval mode.

        Returns ``{name: mean, name + "_std": sample std, "n": count}``. Randomness (e.g.
        dequantization noise) is drawn from a fixed ``seed`` per rank.
        """
        dist_info = dist_info or DistInfo()
        names = self.metric_names()
        was = self.training
        self.eval()
        # Rows: metrics; columns: sum, sum of squares, count. Every rank reduces the same
        # rows in the same order, even with an empty shard.
        sums = torch.zeros(len(names), 3, dtype=torch.float64)
        idx = torch.arange(dist_info.rank, len(split), dist_info.world_size)
        with fixed_rng(seed + dist_info.rank, self.device):
            for start in range(0, len(idx), batch_size):
                x, y = split.batch(idx[start : start + batch_size], self.device)
                values = self(x, y)
                for row, name in enumerate(names):
                    v = values[name].detach().double().cpu()
                    sums[row] += torch.stack([v.sum(), (v**2).sum(),
                                              torch.tensor(float(v.numel()))])
        self.train(was)
        all_reduce_sum(sums)
        out: dict[str, float] = {}
        n = 0
        for name, (total, total_sq, count) in zip(names, sums.tolist(), strict=True):
            n = int(count)
            if count == 0:
                out[name], out[f"{name}_std"] = math.nan, math.nan
                continue
            mean = total / count
            var = max(total_sq / count - mean * mean, 0.0) * count / max(count - 1, 1)
            out[name], out[f"{name}_std"] = mean, math.sqrt(var)
        out["n"] = n
        return out

    def metric_names(self) -> list[str]:
        """The keys ``forward`` returns, in a fixed order (``evaluate`` reduces them)."""
        return ["loss"]

    def describe(self, metrics: dict[str, float], split: str) -> list[str]:
        """Human-readable lines for ``metrics`` from ``evaluate`` on ``split``."""
        n = int(metrics.get("n", 0))
        return [f"{split} {k}: {metrics[k]:.4f}" for k in self.metric_names()] + [
            f"({n} examples)"]

    def diagnostics(self, split: Any, batch_size: int) -> dict[str, float]:
        """Extra single-process checks that ``invertible evaluate`` prints (default none)."""
        return {}

    def describe_diagnostics(self, extra: dict[str, float]) -> list[str]:
        """Human-readable lines for ``diagnostics``."""
        return [f"{k}: {v:.4g}" for k, v in extra.items()]

    # -- generation and pictures ----------------------------------------------------------
    def sample(self, n: int, temperature: float = 1.0) -> Tensor:
        """``n`` new data points: integer levels ``(n, C, H, W)`` or floats ``(n, D)``."""
        raise TaskError(f"a '{self.task}' run cannot generate samples")

    def write_artifacts(self, folder: Path, name: str, n: int,
                        preview: Any = None) -> list[Path]:
        """Pictures for a checkpoint named ``name`` (e.g. ``step_0001000``) into ``folder``:
        ``n`` samples, and/or views of ``preview`` (a held-out ``Split``, or None)."""
        return []

    def write_final(self, folder: Path, n: int, preview: Any = None) -> list[Path]:
        """Pictures made once when training ends; by default the checkpoint ones as "final"."""
        return self.write_artifacts(folder, "final", n, preview)

    # -- data helpers ------------------------------------------------------------------------
    def to_levels(self, x: Tensor) -> Tensor:
        """Model-space images in [0, 1] -> integer levels (uint8), non-finite values -> 0."""
        assert self.n_bins is not None
        x = torch.nan_to_num(x.float(), nan=0.0, posinf=1.0, neginf=0.0)
        return torch.clamp(torch.floor(x * self.n_bins), 0, self.n_bins - 1).to(torch.uint8)

    def center(self, levels: Tensor) -> Tensor:
        """Integer levels -> bin centres ``(k + 0.5) / n_bins``: the noise-free encoding."""
        assert self.n_bins is not None
        return (levels.to(self.dtype) + 0.5) / self.n_bins


def seeded_samples(objective: Objective, n: int, temperature: float = 1.0,
                   seed: int | None = SAMPLE_SEED, labels: Tensor | None = None) -> Tensor:
    """``objective.sample`` under a fixed seed (None: the global RNG), in eval mode.

    ``labels`` ``(n,)`` asks for chosen classes, from tasks that can (``sample_class``).
    """
    sample_class = getattr(objective, "sample_class", None)
    if labels is not None and sample_class is None:
        raise TaskError(f"a '{objective.task}' run cannot sample a chosen class")
    was = objective.training
    objective.eval()
    ctx = fixed_rng(seed, objective.device) if seed is not None else contextlib.nullcontext()
    try:
        with ctx:
            if labels is not None:
                assert sample_class is not None  # checked above
                return sample_class(labels, temperature)
            return objective.sample(n, temperature)
    finally:
        objective.train(was)
