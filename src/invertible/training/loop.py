"""The training loop: budgets, schedule, non-finite guard, EMA, DDP, checkpoints and outputs.

``Trainer(cfg, objective, train, val, run_dir).fit()`` trains any ``Objective`` (see
``invertible.training.objectives``) and returns a summary; the loop knows nothing of the
task beyond the objective's contract. All randomness flows from ``cfg.seed``: the data
order depends on (seed, epoch), the objective's noise (e.g. dequantization) on the torch RNG
(saved per rank in every checkpoint), evaluation and pictures on fixed private seeds (they
never disturb the training stream), so a run killed and resumed from its latest checkpoint
ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from torch.utils.data.distributed import DistributedSampler

from .checkpoint import (
    capture_rng,
    flatten_optimizer,
    prefixed,
    restore_rng,
    save_checkpoint,
    strip_prefix,
    unflatten_optimizer,
)
from .config import ConfigError, TrainConfig
from .datasets import Split
from .distributed import DistInfo, all_gather_object, all_reduce_sum, barrier
from .ema import EMA
from .metrics import MetricsLog, read_metrics
from .objectives.base import Objective, fixed_rng
from .paths import RunPaths
from .plots import save_loss_curve
from .run import write_run_config

if TYPE_CHECKING:
    from ..privacy.dpsgd import DPSGD

__all__ = ["TrainSummary", "Trainer"]

_SINGLE = DistInfo()
# With only a time budget, the cosine horizon is re-estimated this often (in steps).
_REPLAN_EVERY = 100
# Pictures written during training that a run folder keeps per kind (the newest ones).
MAX_PICTURE_HISTORY = 10


@runtime_checkable
class _Projectable(Protocol):
    """A layer that projects its weights back into a well-conditioned set (a circular
    convolution's singular-value clipping); it knows its spectrum once it has seen data."""

    def clip_singular_values_(self) -> Any: ...


def default_val_every(cfg: TrainConfig, n_train: int, world: int) -> int:
    """About ten validations per run when its length in steps is known, else every epoch."""
    per_epoch = max(n_train // (cfg.batch_size * world), 1)
    total = [cfg.steps] if cfg.steps else []
    if cfg.epochs:
        total.append(cfg.epochs * per_epoch)
    if total:
        return max(min(total) // 10, 1)
    return per_epoch


@dataclass
class TrainSummary:
    """How a ``fit`` ended. ``train``/``val``: the last logged metric means; ``best_val``: the
    lowest validation value of the objective's ``monitor`` metric."""

    step: int
    epoch: int
    elapsed: float
    monitor: str
    train: dict[str, float]
    val: dict[str, float] | None
    best_val: float | None
    images_per_s: float | None
    nonfinite_events: int
    artifacts: list[Path] = field(default_factory=list)
    interrupted: bool = False
    privacy: dict[str, Any] | None = None


class Trainer:
    """Trains ``objective`` on ``train``, validating on ``val`` (None: no validation).

    ``run_dir`` None writes nothing. ``resume`` is ``(tensors, meta)`` from
    ``load_checkpoint`` of the run's latest checkpoint.
    """

    def __init__(self, cfg: TrainConfig, objective: Objective, train: Split, val: Split | None,
                 run_dir: Path | str | None = None, *, dist_info: DistInfo = _SINGLE,
                 device: torch.device | str = "cpu",
                 resume: tuple[dict[str, Tensor], dict[str, Any]] | None = None,
                 progress: bool | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        self.dist = dist_info
        self.train_split, self.val_split = train, val
        self.paths = RunPaths(Path(run_dir)) if run_dir is not None else None
        self.writes = self.paths is not None and dist_info.is_main
        self.progress = (sys.stderr.isatty() if progress is None else progress) and self.writes
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        self.objective = objective.to(self.device)
        if self.writes:
            assert self.paths is not None
            self.paths.root.mkdir(parents=True, exist_ok=True)
            if resume is None and not self.paths.config.exists():
                # A run started from Python (not the CLI) can be opened with open_run too.
                write_run_config(self.paths, dataclasses.replace(cfg, task=objective.task),
                                 train.info(), dist_info.world_size)
        self.metrics = MetricsLog(self.paths.metrics if self.paths else "/dev/null",
                                  enabled=self.writes)

        # The sampler only needs the length: it shards and shuffles indices.
        indices = cast(Dataset[int], range(len(train)))
        self.sampler: DistributedSampler[int] = DistributedSampler(
            indices, num_replicas=dist_info.world_size, rank=dist_info.rank, shuffle=True,
            seed=cfg.seed, drop_last=True)
        self.steps_per_epoch = len(self.sampler) // cfg.batch_size
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"--batch-size {cfg.batch_size} x {dist_info.world_size} process(es) is larger "
                f"than the training set ({len(train)} examples)"
            )
        budgets = []
        if cfg.steps is not None:
            budgets.append(cfg.steps)
        if cfg.epochs is not None:
            budgets.append(cfg.epochs * self.steps_per_epoch)
        self.total_steps: int | None = min(budgets) if budgets else None
        # None in the config: about ten validations a run, pictures with them.
        self.val_every = (cfg.val_every if cfg.val_every is not None
                          else default_val_every(cfg, len(train), dist_info.world_size))
        self.sample_every = cfg.sample_every if cfg.sample_every is not None else self.val_every

        self.optimizer = torch.optim.Adam(self.objective.parameters(), lr=cfg.lr,
                                          weight_decay=cfg.weight_decay)
        self.dp = self._private_sgd(cfg, len(train)) if cfg.dp_epsilon is not None else None
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.lr_scale = 1.0
        self.nonfinite_events = 0
        self.planned_steps: int | None = None
        self.best_val = math.inf
        self.elapsed_before = 0.0
        self._t0 = time.perf_counter()
        self._validated_at = -1

        if resume is not None:
            self._restore(*resume)
        else:
            torch.manual_seed(cfg.seed + 1_000_003 * dist_info.rank)
            np.random.seed((cfg.seed + 7919 * dist_info.rank) % 2**32)
            random.seed(cfg.seed + 7919 * dist_info.rank)
            if self.dp is None:
                self._data_dependent_init()
            else:
                from ..privacy.private_init import private_first_actnorm_init

                # The ordinary init would read private data outside the accounting.
                init = self.dp.init
                if init is not None:
                    private_first_actnorm_init(self.objective, train,
                                               sample_rate=init.sample_rate,
                                               noise_multiplier=init.noise_multiplier,
                                               seed=cfg.seed)

        self.model: nn.Module = self.objective
        if dist_info.enabled:
            ids = [self.device.index or 0] if self.device.type == "cuda" else None
            # DDP broadcasts rank 0's parameters and buffers here: the data-dependent init
            # above (done on each rank's own batch) becomes rank 0's everywhere.
            self.model = nn.parallel.DistributedDataParallel(self.objective, device_ids=ids)
        # The average starts from the weights every rank now shares (after the broadcast).
        self.ema = EMA(self.objective, cfg.ema) if cfg.ema > 0 else None
        if self.ema is not None and resume is not None:
            self.ema.load_state_dict(strip_prefix("ema", resume[0]))

    # -- setup ------------------------------------------------------------------------------
    def _private_sgd(self, cfg: TrainConfig, n_train: int) -> DPSGD:
        """DP-SGD (``--dp-epsilon``): sigma calibrated to the run's whole step budget."""
        from ..privacy.dpsgd import DPSGD
        from ..privacy.private_init import planned_init

        try:
            import opacus  # noqa: F401
        except ImportError:
            raise ConfigError("--dp-epsilon needs opacus: pip install 'invertible[privacy]'"
                              ) from None
        if self.dist.enabled:
            raise ConfigError("differentially private training runs in one process (no "
                              "torchrun): the accounting assumes one Poisson-sampled batch "
                              "per step")
        assert cfg.dp_epsilon is not None and self.total_steps is not None  # validated
        return DPSGD(self.objective, self.optimizer, epsilon=cfg.dp_epsilon,
                     delta=cfg.dp_delta, max_grad_norm=cfg.dp_max_grad_norm,
                     n_train=n_train, batch_size=cfg.batch_size, steps=self.total_steps,
                     accountant=cfg.dp_accountant, chunk=cfg.dp_chunk,
                     init=planned_init(self.objective, n_train))

    def _data_dependent_init(self) -> None:
        """The objective's data-dependent init on a larger batch (ActNorm sets itself)."""
        n = min(len(self.train_split), max(self.cfg.batch_size, 2048))
        g = torch.Generator().manual_seed(self.cfg.seed + self.dist.rank)
        idx = torch.randperm(len(self.train_split), generator=g)[:n]
        with fixed_rng(self.cfg.seed + 99 + self.dist.rank, self.device):
            self.objective.init_from_data(*self.train_split.batch(idx, self.device))

    def _restore(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        world = meta.get("world_size", 1)
        if world != self.dist.world_size:
            raise ConfigError(
                f"this run was trained with {world} process(es); resume it with the same number"
            )
        self.objective.load_state_dict(strip_prefix("model", tensors))
        st = unflatten_optimizer(strip_prefix("optim", tensors), meta["optimizer"])
        self.optimizer.load_state_dict(st)
        t = meta["trainer"]
        self.step, self.epoch, self.batch_in_epoch = t["step"], t["epoch"], t["batch_in_epoch"]
        self.lr_scale, self.nonfinite_events = t["lr_scale"], t["nonfinite_events"]
        self.planned_steps, self.elapsed_before = t["planned_steps"], t["elapsed"]
        self.best_val = t["best_val"] if t["best_val"] is not None else math.inf
        r = self.dist.rank
        restore_rng(strip_prefix(f"rng{r}", tensors), meta["rng"][r])
        self.metrics.truncate_after(self.step)

    # -- schedule ---------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        cfg = self.cfg
        lr = cfg.lr * self.lr_scale
        if cfg.warmup > 0:
            lr *= min(1.0, (step + 1) / cfg.warmup)
        total = self.total_steps or self.planned_steps
        if cfg.schedule == "cosine" and total:
            lr *= 0.5 * (1 + math.cos(math.pi * min(1.0, step / total)))
        return lr

    def _maybe_plan(self, t_start: float, steps_done: int) -> None:
        """With only a time budget, set the cosine horizon from the measured step rate.

        Re-planned every ``_REPLAN_EVERY`` steps from the rate over the whole run so far
        (validation pauses included): a single early estimate, taken while the machine is
        warming up or busy, can end the schedule halfway and leave the rest of the budget
        at a learning rate of zero.
        """
        cfg = self.cfg
        if self.total_steps is not None or cfg.max_time is None or steps_done < 20:
            return
        if self.planned_steps is not None and steps_done % _REPLAN_EVERY:
            return
        rate = steps_done / max(time.perf_counter() - t_start, 1e-9)
        left = max(cfg.max_time - self._elapsed(), 0.0)
        plan = torch.tensor([float(self.step + rate * left)], dtype=torch.float64)
        all_reduce_sum(plan)
        self.planned_steps = max(int(plan.item() / self.dist.world_size), self.step + 1)

    # -- checkpoints ------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors = prefixed("model", self.objective.state_dict())
        if self.ema is not None:
            tensors.update(prefixed("ema", self.ema.state_dict()))
        opt_t, opt_meta = flatten_optimizer(self.optimizer.state_dict())
        tensors.update(prefixed("optim", opt_t))
        # Every rank's RNG state goes into rank 0's file (rank r restores its own).
        rng_t, rng_meta = capture_rng()
        gathered = all_gather_object((rng_t, rng_meta))
        rng_metas = []
        for r, item in enumerate(gathered):
            t, m = cast(tuple[dict[str, Tensor], dict[str, Any]], item)
            tensors.update(prefixed(f"rng{r}", t))
            rng_metas.append(m)
        meta = {
            "step": self.step,
            "task": self.objective.task,
            "world_size": self.dist.world_size,
            "optimizer": opt_meta,
            "rng": rng_metas,
            "config": self.cfg.to_dict(),
            "privacy": self.privacy(),
            "data": self.train_split.info(),
            "trainer": {
                "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "lr_scale": self.lr_scale, "nonfinite_events": self.nonfinite_events,
                "planned_steps": self.planned_steps, "elapsed": self._elapsed(),
                "best_val": self.best_val if math.isfinite(self.best_val) else None,
            },
        }
        return tensors, meta

    def save(self, which: str = "latest", extra: dict[str, Any] | None = None) -> None:
        tensors, meta = self._state()  # collective: every rank takes part
        if self.writes:
            assert self.paths is not None
            self.paths.checkpoints.mkdir(parents=True, exist_ok=True)
            meta.update(extra or {})
            save_checkpoint(getattr(self.paths, which), tensors, meta)
        barrier()

    # -- evaluation and pictures ------------------------------------------------------------
    def _elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self._t0)

    def eval_model(self) -> Objective:
        """The weights used for validation and pictures: the EMA copy when kept."""
        return self.ema.averaged if self.ema is not None else self.objective  # type: ignore

    def validate(self) -> dict[str, float] | None:
        if self.val_split is None or len(self.val_split) == 0:
            return None
        return self.eval_model().evaluate(self.val_split, max(self.cfg.batch_size, 256),
                                          self.dist)

    def write_artifacts(self, name: str) -> list[Path]:
        """The objective's pictures for checkpoint ``name``; older ones beyond
        ``MAX_PICTURE_HISTORY`` per folder are removed (the final ones always stay)."""
        if not self.writes:
            return []
        assert self.paths is not None
        model = self.eval_model()
        preview = self.val_split if self.val_split is not None else self.train_split
        n = self.cfg.n_samples
        paths = (model.write_final(self.paths.root, n, preview) if name == "final"
                 else model.write_artifacts(self.paths.root, name, n, preview))
        for folder in {p.parent for p in paths}:
            history = sorted(folder.glob("step_*"))
            for old in history[:-MAX_PICTURE_HISTORY]:
                old.unlink(missing_ok=True)
        return paths

    def privacy(self) -> dict[str, Any] | None:
        """A DP run's budget so far (``DPSGD.summary``); None for a non-private run."""
        return self.dp.summary(self.step) if self.dp is not None else None

    def _validate_and_save(self, final: bool = False) -> dict[str, float] | None:
        self._validated_at = self.step
        val = self.validate()
        monitor = self.objective.monitor
        if val is not None:
            self.metrics.write({"step": self.step, "epoch": self.epoch,
                                **{f"val_{k}": val[k] for k in self.objective.metric_names()}})
        # A DP run's "best" is its final weights: picking by the validation split would use
        # data that the accountant does not cover.
        if val is not None and self.dp is None:
            value = val[monitor]
            if value < self.best_val:
                self.best_val = value
                self.save("best", {f"val_{monitor}": value})
        elif final:
            self.save("best")
        self.save("latest", {f"val_{monitor}": None if val is None else val[monitor]})
        return val

    # -- the loop ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _graceful_stop(self) -> Iterator[None]:
        """SIGINT/SIGTERM ask the loop to stop at the next step boundary, where the state is
        consistent, and save it there; a second signal interrupts at once (no save: the last
        periodic checkpoint stays)."""
        self._stop_requested = False
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: object) -> None:
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def _budget_left(self) -> bool:
        return self.total_steps is None or self.step < self.total_steps

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        # bfloat16 autocast on any device; layers that need float32 (the FFT convolution)
        # opt out locally.
        if not self.cfg.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def fit(self) -> TrainSummary:
        cfg = self.cfg
        names = self.objective.metric_names()
        self._t0 = time.perf_counter()
        t_run = time.perf_counter()
        steps_this_run = 0
        if self.writes and self.step == 0:
            self.metrics.write({"step": 0, "event": "start", "task": self.objective.task,
                                "world_size": self.dist.world_size,
                                "global_batch": cfg.batch_size * self.dist.world_size,
                                "steps_per_epoch": self.steps_per_epoch})
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=self.total_steps, initial=self.step, unit="step",
                       dynamic_ncols=True, leave=True)
        # On-device sums of each metric over the good steps of the log window (no sync).
        window = torch.zeros(len(names) + 1, dtype=torch.float64, device=self.device)
        window_t, window_steps = time.perf_counter(), 0
        pending_bad = torch.zeros((), dtype=torch.int64, device=self.device)
        last_train: dict[str, float] = {}
        last_val: dict[str, float] | None = None
        ips: float | None = None
        time_up = stop = hard_stop = False
        params = [p for p in self.objective.parameters() if p.requires_grad]
        self.objective.train()
        with self._graceful_stop():
            try:
                while self._budget_left() and not time_up and not stop:
                    self.sampler.set_epoch(self.epoch)
                    order = torch.tensor(list(iter(self.sampler)), dtype=torch.long)
                    while self.batch_in_epoch < self.steps_per_epoch and self._budget_left():
                        b = self.batch_in_epoch
                        idx = (self.dp.batch_indices(self.step, cfg.seed) if self.dp is not None
                               else order[b * cfg.batch_size : (b + 1) * cfg.batch_size])
                        x, y = self.train_split.batch(idx, self.device)
                        lr = self.lr_at(self.step)
                        for g in self.optimizer.param_groups:
                            g["lr"] = lr
                        self.optimizer.zero_grad(set_to_none=True)
                        out, ok, loss = self._gradients(x, y, names, params)
                        if cfg.check_every == 1:
                            if bool(ok):  # one host read per step: exact skips
                                self._update()
                            else:
                                self._on_nonfinite(1, float(loss.detach().float().mean()))
                        else:
                            # No host read: a bad step's gradients become zeros (Adam then only
                            # follows its momentum); the count is read every check_every steps.
                            for p in params:
                                if p.grad is not None:
                                    p.grad.masked_fill_(~ok, 0.0)
                            self._update()
                            pending_bad += (~ok).to(torch.int64)
                        self.optimizer.zero_grad(set_to_none=True)
                        with torch.no_grad():
                            sums = [torch.where(ok, out[k].detach().double().sum(), 0.0)
                                    for k in names]
                            count = torch.where(ok, float(out["loss"].shape[0]), 0.0)
                            window += torch.stack([*sums, count.double()])
                        self.step += 1
                        self.batch_in_epoch += 1
                        steps_this_run += 1
                        window_steps += 1
                        if cfg.check_every > 1 and self.step % cfg.check_every == 0:
                            bad = int(pending_bad)
                            pending_bad.zero_()
                            if bad:
                                self._on_nonfinite(bad, math.nan)
                        if self.step % cfg.check_every == 0 or not self._budget_left():
                            # Every rank must agree on stopping, or DDP would hang.
                            over = cfg.max_time is not None and self._elapsed() >= cfg.max_time
                            flags = all_reduce_sum(torch.tensor([float(over),
                                                                 float(self._stop_requested)]))
                            time_up, stop = bool(flags[0] > 0), bool(flags[1] > 0)
                        self._maybe_plan(t_run, steps_this_run)
                        if bar is not None:
                            if bar.total is None and self.planned_steps:
                                bar.total = self.planned_steps
                            bar.update(1)
                        if (self.step % cfg.log_every == 0 or not self._budget_left() or time_up
                                or stop):
                            reduced = all_reduce_sum(window.cpu())
                            now = time.perf_counter()
                            n_img = window_steps * cfg.batch_size * self.dist.world_size
                            ips = n_img / max(now - window_t, 1e-9)
                            if reduced[-1] > 0:
                                last_train = {k: float(reduced[i] / reduced[-1])
                                              for i, k in enumerate(names)}
                                self.metrics.write({
                                    "step": self.step, "epoch": self.epoch,
                                    **{f"train_{k}": v for k, v in last_train.items()},
                                    "lr": lr, "images_per_s": ips, "elapsed": self._elapsed(),
                                })
                                if bar is not None:
                                    bar.set_postfix({k: f"{last_train[k]:.4g}"
                                                     for k in self.objective.progress_metrics},
                                                    lr=f"{lr:.2e}")
                            window.zero_()
                            window_t, window_steps = now, 0
                        if time_up or stop:
                            break
                        if self.val_every and self.step % self.val_every == 0:
                            last_val = self._validate_and_save()
                        if self.sample_every and self.step % self.sample_every == 0:
                            self.write_artifacts(f"step_{self.step:07d}")
                    if self.batch_in_epoch >= self.steps_per_epoch:
                        self.epoch += 1
                        self.batch_in_epoch = 0
            except KeyboardInterrupt:
                hard_stop = True
        if bar is not None:
            bar.close()
        if stop or hard_stop:
            if stop:  # at a step boundary: the state is consistent
                self.save("latest")
            self.metrics.write({"step": self.step, "event": "interrupted", "saved": stop})
            return self._summary(last_train, last_val, ips, [], interrupted=True)
        # The summary's throughput covers the whole run (validation included), not one window.
        ips = steps_this_run * cfg.batch_size * self.dist.world_size / max(
            time.perf_counter() - t_run, 1e-9)
        if self._validated_at != self.step:  # no second pass over the same weights
            last_val = self._validate_and_save(final=True)
        elif self.dp is not None:
            self.save("best")
        artifacts = self.write_artifacts("final")
        if self.writes:
            assert self.paths is not None
            save_loss_curve(read_metrics(self.paths.metrics), self.paths.loss_curve,
                            self.objective.monitor, self.objective.monitor_label)
            self.metrics.write({"step": self.step, "event": "end", "elapsed": self._elapsed(),
                                "reason": "time" if time_up else "budget"})
            if self.dp is not None:
                self.metrics.write({"step": self.step, "event": "privacy", **self.dp.summary(
                    self.step)})
        return self._summary(last_train, last_val, ips, artifacts)

    def _gradients(self, x: Tensor, y: Tensor | None, names: list[str],
                   params: list[nn.Parameter]) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        """Set the parameters' gradients for batch ``(x, y)``; return its per-sample metrics,
        the on-device flag that the step may be applied, and the loss (for a warning)."""
        if self.dp is not None:
            # Clipped per example and noised: the noised gradient is finite whatever the batch
            # held, and the step is never skipped for it (a skip would depend on private data).
            out = self.dp.gradients(x, y, names)
            norm = torch.linalg.vector_norm(
                torch.stack([p.grad.norm() for p in params if p.grad is not None]))
            return out, torch.isfinite(norm), out["loss"]
        with self._autocast():
            out = self.model(x, y)
        loss = out["loss"].float().mean()
        loss.backward()
        clip = self.cfg.grad_clip if self.cfg.grad_clip is not None else math.inf
        norm = nn.utils.clip_grad_norm_(params, clip)
        # The gradients are all-reduced, so the norm's flag is the same on every rank; the
        # loss is local, so it joins the test in one process only.
        ok = torch.isfinite(norm)
        if not self.dist.enabled:
            ok = ok & torch.isfinite(loss.detach())
        return out, ok, loss

    def _update(self) -> None:
        self.optimizer.step()
        self._project(self.step + 1)
        if self.ema is not None:
            self.ema.update(self.objective)

    @torch.no_grad()
    def _project(self, step: int) -> None:
        """Keep circular convolutions well conditioned (identical on every rank)."""
        every = self.cfg.sv_clip_every
        if not every or step % every:
            return
        # Looked up each time: a resumed run's layers learn their image size on the first
        # step, and a layer that has seen no data has no spectrum to project.
        for m in self.objective.modules():
            if isinstance(m, _Projectable) and getattr(m, "_last_hw", None) is not None:
                m.clip_singular_values_()

    def _summary(self, train: dict[str, float], val: dict[str, float] | None,
                 ips: float | None, artifacts: list[Path],
                 interrupted: bool = False) -> TrainSummary:
        return TrainSummary(self.step, self.epoch, self._elapsed(), self.objective.monitor,
                            train, val, self.best_val if math.isfinite(self.best_val) else None,
                            ips, self.nonfinite_events, artifacts, interrupted,
                            self.privacy())

    def _on_nonfinite(self, count: int, loss: float) -> None:
        """Skipped steps: no update. Every ``nonfinite_patience`` events lower the LR."""
        before = self.nonfinite_events
        self.nonfinite_events += count
        record: dict[str, Any] = {"step": self.step, "event": "nonfinite", "loss": loss,
                                  "count": self.nonfinite_events}
        patience = self.cfg.nonfinite_patience
        crossed = self.nonfinite_events // patience - before // patience
        if crossed > 0:
            self.lr_scale *= self.cfg.lr_decay_on_nonfinite**crossed
            record["lr_scale"] = self.lr_scale
        self.metrics.write(record)
        if self.writes:
            self.log(f"invertible: warning: non-finite loss or gradient at step {self.step}, "
                     "step skipped" + (f"; learning rate scaled to {self.lr_scale:g}x"
                                       if "lr_scale" in record else ""))
