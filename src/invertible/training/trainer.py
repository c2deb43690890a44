"""The training loop: budgets, schedule, non-finite guard, EMA, DDP, checkpoints and outputs.

``Trainer(cfg, objective, train, val, run_dir).fit()`` trains and returns a summary. All
randomness flows from ``cfg.seed``: the data order depends on (seed, epoch), dequantization
noise on the torch RNG (saved per rank in every checkpoint), evaluation and sample grids on
fixed private seeds (they never disturb the training stream), so a run interrupted and
resumed from its latest checkpoint ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data.distributed import DistributedSampler

from .batches import Objective, Split
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
from .distributed import DistInfo, all_gather_object, all_reduce_sum, barrier
from .ema import EMA
from .metrics import MetricsLog
from .plots import save_image_grid, save_loss_curve, save_scatter

__all__ = ["RunPaths", "TrainSummary", "Trainer", "draw_samples", "evaluate_bpd"]

EVAL_SEED = 1234
_SINGLE = DistInfo()
SAMPLE_SEED = 4321
# With only a time budget, the cosine horizon is re-estimated this often (in steps).
_REPLAN_EVERY = 100


@dataclass(frozen=True)
class RunPaths:
    """Where a run folder keeps its files."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def latest(self) -> Path:
        return self.checkpoints / "latest"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def loss_curve(self) -> Path:
        return self.root / "loss.png"


@dataclass
class TrainSummary:
    step: int
    epoch: int
    elapsed: float
    train_bpd: float | None
    val_bpd: float | None
    best_val_bpd: float | None
    images_per_s: float | None
    nonfinite_events: int
    samples_path: Path | None = None
    interrupted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _fixed_rng(seed: int, device: torch.device):
    """Run a block with the global RNGs seeded to ``seed``, restoring them afterwards."""
    devices = [device] if device.type == "cuda" else []

    @contextlib.contextmanager
    def ctx():
        with torch.random.fork_rng(devices=devices, device_type=device.type):
            torch.manual_seed(seed)
            yield

    return ctx()


@torch.no_grad()
def evaluate_bpd(objective: Objective, split: Split, batch_size: int, device: torch.device,
                 dist_info: DistInfo = _SINGLE, seed: int = EVAL_SEED,
                 per_sample: bool = False) -> tuple[float, float, int, Tensor | None]:
    """Mean bits/dim over ``split`` (sharded over ranks), its standard deviation and count.

    With ``per_sample`` (single process) the per-image values are returned too.
    """
    was = objective.training
    objective.eval()
    sums = torch.zeros(3, dtype=torch.float64)
    values = []
    idx = torch.arange(dist_info.rank, len(split), dist_info.world_size)
    with _fixed_rng(seed + dist_info.rank, device):
        for start in range(0, len(idx), batch_size):
            xb = split.x[idx[start : start + batch_size]].to(device)
            bpd = objective(xb).double().cpu()
            sums += torch.stack([bpd.sum(), (bpd**2).sum(), torch.tensor(float(len(bpd)))])
            if per_sample:
                values.append(bpd)
    objective.train(was)
    all_reduce_sum(sums)
    total, total_sq, n = sums.tolist()
    if n == 0:
        return math.nan, math.nan, 0, None
    mean = total / n
    var = max(total_sq / n - mean * mean, 0.0) * n / max(n - 1, 1)
    return mean, math.sqrt(var), int(n), (torch.cat(values) if per_sample else None)


@torch.no_grad()
def draw_samples(objective: Objective, n: int, temperature: float = 1.0,
                 seed: int | None = SAMPLE_SEED) -> Tensor:
    """``n`` samples: integer levels ``(n, C, H, W)`` for images, floats ``(n, D)`` else."""
    was = objective.training
    objective.eval()
    device = next(objective.parameters()).device
    ctx = _fixed_rng(seed, device) if seed is not None else contextlib.nullcontext()
    with ctx:
        x = objective.flow.sample(n, temperature)
    objective.train(was)
    return objective.to_levels(x).cpu() if objective.kind == "image" else x.float().cpu()


def save_samples(objective: Objective, path: Path, n: int, temperature: float = 1.0,
                 seed: int | None = SAMPLE_SEED) -> Path:
    x = draw_samples(objective, n, temperature, seed)
    if objective.kind == "image":
        return save_image_grid(x.numpy(), objective.n_bins, path)
    return save_scatter(x.numpy(), path, title=f"{n} samples, T={temperature}")


class Trainer:
    """Trains ``objective`` (a flow plus its dequantizer) on ``train``.

    ``run_dir`` None writes nothing. ``resume`` is ``(tensors, meta)`` from
    ``load_checkpoint`` of the run's latest checkpoint. ``stop_at_step`` stops like an
    interruption (save latest, no final evaluation); tests use it to split a run in two.
    """

    def __init__(self, cfg: TrainConfig, objective: Objective, train: Split, val: Split | None,
                 run_dir: Path | None = None, *, dist_info: DistInfo = _SINGLE,
                 device: torch.device | str = "cpu", resume: tuple[dict, dict] | None = None,
                 progress: bool | None = None, stop_at_step: int | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        self.dist = dist_info
        self.train_split, self.val_split = train, val
        self.paths = RunPaths(Path(run_dir)) if run_dir is not None else None
        self.writes = self.paths is not None and dist_info.is_main
        self.progress = (sys.stderr.isatty() if progress is None else progress) and self.writes
        self.stop_at_step = stop_at_step
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        self.objective = objective.to(self.device)
        self.metrics = MetricsLog(self.paths.metrics if self.paths else "/dev/null",
                                  enabled=self.writes)
        if cfg.amp and self.device.type != "cuda":
            raise ConfigError("--amp needs a CUDA device (mixed precision is GPU only)")

        self.sampler = DistributedSampler(range(len(train)), num_replicas=dist_info.world_size,
                                          rank=dist_info.rank, shuffle=True, seed=cfg.seed,
                                          drop_last=True)
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

        self.optimizer = torch.optim.Adam(self.objective.parameters(), lr=cfg.lr,
                                          weight_decay=cfg.weight_decay)
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.lr_scale = 1.0
        self.nonfinite_events = 0
        self.planned_steps: int | None = None
        self.best_val = math.inf
        self.elapsed_before = 0.0
        self.ema: EMA | None = None

        if resume is not None:
            self._restore(*resume)
        else:
            torch.manual_seed(cfg.seed + 1_000_003 * dist_info.rank)
            np.random.seed((cfg.seed + 7919 * dist_info.rank) % 2**32)
            random.seed(cfg.seed + 7919 * dist_info.rank)
            self._data_dependent_init()
        if cfg.ema > 0 and self.ema is None:
            self.ema = EMA(self.objective, cfg.ema)
        if resume is not None and cfg.ema > 0:
            self.ema.load_state_dict(strip_prefix("ema", resume[0]))  # type: ignore[union-attr]

        # Layers with a singular-value projection (circular convolutions) that have seen data.
        self._conditioned = [m for m in self.objective.modules()
                             if hasattr(m, "clip_singular_values_")
                             and getattr(m, "_last_hw", None) is not None]
        self.model: nn.Module = self.objective
        if dist_info.enabled:
            ids = [self.device.index or 0] if self.device.type == "cuda" else None
            # DDP broadcasts rank 0's parameters and buffers here: the ActNorm init above
            # (done on each rank's own batch) becomes rank 0's everywhere.
            self.model = nn.parallel.DistributedDataParallel(self.objective, device_ids=ids)

    # -- setup ------------------------------------------------------------------------------
    @torch.no_grad()
    def _data_dependent_init(self) -> None:
        """One forward pass in train mode on a larger batch: ActNorm layers set themselves."""
        n = min(len(self.train_split), max(self.cfg.batch_size, 512))
        g = torch.Generator().manual_seed(self.cfg.seed + self.dist.rank)
        idx = torch.randperm(len(self.train_split), generator=g)[:n]
        self.objective.train()
        with _fixed_rng(self.cfg.seed + 99 + self.dist.rank, self.device):
            self.objective(self.train_split.x[idx].to(self.device))

    def _restore(self, tensors: dict[str, Tensor], meta: dict) -> None:
        self.objective.load_state_dict(strip_prefix("model", tensors))
        st = unflatten_optimizer(strip_prefix("optim", tensors), meta["optimizer"])
        self.optimizer.load_state_dict(st)
        t = meta["trainer"]
        self.step, self.epoch, self.batch_in_epoch = t["step"], t["epoch"], t["batch_in_epoch"]
        self.lr_scale, self.nonfinite_events = t["lr_scale"], t["nonfinite_events"]
        self.planned_steps, self.elapsed_before = t["planned_steps"], t["elapsed"]
        self.best_val = t["best_val"] if t["best_val"] is not None else math.inf
        world = meta.get("world_size", 1)
        if world != self.dist.world_size:
            raise ConfigError(
                f"this run was trained with {world} process(es); resume it with the same number"
            )
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

    # -- checkpoints ------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, Tensor], dict]:
        tensors = prefixed("model", self.objective.state_dict())
        if self.ema is not None:
            tensors.update(prefixed("ema", self.ema.state_dict()))
        opt_t, opt_meta = flatten_optimizer(self.optimizer.state_dict())
        tensors.update(prefixed("optim", opt_t))
        # Every rank's RNG state goes into rank 0's file (rank r restores its own).
        rng_t, rng_meta = capture_rng()
        gathered = all_gather_object((rng_t, rng_meta))
        rng_metas = []
        for r, (t, m) in enumerate(gathered):  # type: ignore[misc]
            tensors.update(prefixed(f"rng{r}", t))
            rng_metas.append(m)
        meta = {
            "step": self.step,
            "world_size": self.dist.world_size,
            "optimizer": opt_meta,
            "rng": rng_metas,
            "config": self.cfg.to_dict(),
            "data": self.train_split.info(),
            "trainer": {
                "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "lr_scale": self.lr_scale, "nonfinite_events": self.nonfinite_events,
                "planned_steps": self.planned_steps, "elapsed": self._elapsed(),
                "best_val": self.best_val if math.isfinite(self.best_val) else None,
            },
        }
        return tensors, meta

    def save(self, which: str = "latest", extra: dict | None = None) -> None:
        tensors, meta = self._state()  # collective: every rank takes part
        if self.writes:
            assert self.paths is not None
            self.paths.checkpoints.mkdir(parents=True, exist_ok=True)
            meta.update(extra or {})
            save_checkpoint(getattr(self.paths, which), tensors, meta)
        barrier()

    # -- loop -------------------------------------------------------------------------------
    def _elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self._t0)

    def _eval_model(self) -> Objective:
        return self.ema.averaged if self.ema is not None else self.objective  # type: ignore

    def validate(self) -> float | None:
        if self.val_split is None or len(self.val_split) == 0:
            return None
        mean, _, _, _ = evaluate_bpd(self._eval_model(), self.val_split,
                                     max(self.cfg.batch_size, 256), self.device, self.dist)
        return mean

    def write_samples(self, name: str) -> Path | None:
        if not self.writes:
            return None
        assert self.paths is not None
        self.paths.samples.mkdir(parents=True, exist_ok=True)
        return save_samples(self._eval_model(), self.paths.samples / f"{name}.png",
                            self.cfg.n_samples)

    def _budget_left(self) -> bool:
        if self.stop_at_step is not None and self.step >= self.stop_at_step:
            return False
        return self.total_steps is None or self.step < self.total_steps

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

    def fit(self) -> TrainSummary:
        cfg = self.cfg
        self._t0 = time.perf_counter()
        t_run = time.perf_counter()
        steps_this_run = 0
        if self.writes and self.step == 0:
            self.metrics.write({"step": 0, "event": "start", "world_size": self.dist.world_size,
                                "global_batch": cfg.batch_size * self.dist.world_size,
                                "steps_per_epoch": self.steps_per_epoch})
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=self.total_steps, initial=self.step, unit="step",
                       dynamic_ncols=True, leave=True)
        window = torch.zeros(2, dtype=torch.float64)  # sum of bpd, number of images
        window_t, window_steps = time.perf_counter(), 0
        last_train: float | None = None
        last_val: float | None = None
        ips: float | None = None
        interrupted = False
        time_up = False
        amp = (torch.autocast(device_type="cuda", dtype=torch.bfloat16) if cfg.amp
               else contextlib.nullcontext())
        self.objective.train()
        try:
            while self._budget_left() and not time_up:
                self.sampler.set_epoch(self.epoch)
                order = torch.tensor(list(iter(self.sampler)), dtype=torch.long)
                while self.batch_in_epoch < self.steps_per_epoch and self._budget_left():
                    b = self.batch_in_epoch
                    idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
                    xb = self.train_split.x[idx].to(self.device, non_blocking=True)
                    lr = self.lr_at(self.step)
                    for g in self.optimizer.param_groups:
                        g["lr"] = lr
                    with amp:
                        bpd = self.model(xb).float()
                    loss = bpd.mean()
                    over = cfg.max_time is not None and self._elapsed() >= cfg.max_time
                    # Every rank must agree on skipping and stopping, or DDP would hang.
                    flags = torch.tensor([0.0 if torch.isfinite(loss) else 1.0, float(over)])
                    all_reduce_sum(flags)
                    if flags[1] > 0:
                        time_up = True
                        break
                    ok = flags[0] == 0
                    if ok:
                        self.optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        clip = cfg.grad_clip if cfg.grad_clip is not None else math.inf
                        norm = nn.utils.clip_grad_norm_(self.objective.parameters(), clip)
                        ok = bool(torch.isfinite(norm))
                        if ok:
                            self.optimizer.step()
                            self._project(self.step + 1)
                            if self.ema is not None:
                                self.ema.update(self.objective)
                        self.optimizer.zero_grad(set_to_none=True)
                    if ok:
                        window += torch.tensor([float(bpd.detach().sum()), float(len(bpd))],
                                               dtype=torch.float64)
                    else:
                        self._on_nonfinite(loss)
                    self.step += 1
                    self.batch_in_epoch += 1
                    steps_this_run += 1
                    window_steps += 1
                    self._maybe_plan(t_run, steps_this_run)
                    if bar is not None:
                        if bar.total is None and self.planned_steps:
                            bar.total = self.planned_steps
                        bar.update(1)
                    if self.step % cfg.log_every == 0 or not self._budget_left():
                        all_reduce_sum(window)
                        now = time.perf_counter()
                        n_img = window_steps * cfg.batch_size * self.dist.world_size
                        ips = n_img / max(now - window_t, 1e-9)
                        if window[1] > 0:
                            last_train = float(window[0] / window[1])
                            self.metrics.write({
                                "step": self.step, "epoch": self.epoch,
                                "train_bpd": last_train,
                                "train_loss": last_train * self.objective.dims * math.log(2),
                                "lr": lr, "images_per_s": ips, "elapsed": self._elapsed(),
                            })
                            if bar is not None:
                                bar.set_postfix(loss=f"{last_train * self.objective.dims * math.log(2):.2f}",
                                                bpd=f"{last_train:.3f}", lr=f"{lr:.2e}")
                        window.zero_()
                        window_t, window_steps = now, 0
                    if cfg.val_every and self.step % cfg.val_every == 0:
                        last_val = self._validate_and_save()
                    if cfg.sample_every and self.step % cfg.sample_every == 0:
                        self.write_samples(f"step_{self.step:07d}")
                if self.batch_in_epoch >= self.steps_per_epoch:
                    self.epoch += 1
                    self.batch_in_epoch = 0
        except KeyboardInterrupt:
            interrupted = True
        if bar is not None:
            bar.close()
        if interrupted or (self.stop_at_step is not None and self.step >= self.stop_at_step
                           and (self.total_steps is None or self.step < self.total_steps)):
            self.save("latest")
            self.metrics.write({"step": self.step, "event": "interrupted"})
            return self._summary(last_train, last_val, ips, None, interrupted=True)
        self._debug_dump()
        # The summary's throughput covers the whole run (validation included), not one window.
        ips = steps_this_run * cfg.batch_size * self.dist.world_size / max(
            time.perf_counter() - t_run, 1e-9)
        last_val = self._validate_and_save(final=True)
        samples = self.write_samples("final")
        if self.writes:
            assert self.paths is not None
            from .metrics import read_metrics

            save_loss_curve(read_metrics(self.paths.metrics), self.paths.loss_curve)
            self.metrics.write({"step": self.step, "event": "end", "elapsed": self._elapsed(),
                                "reason": "time" if time_up else "budget"})
        return self._summary(last_train, last_val, ips, samples)

    @torch.no_grad()
    def _project(self, step: int) -> None:
        """Keep circular convolutions well conditioned (identical on every rank)."""
        every = self.cfg.sv_clip_every
        if not every or step % every:
            return
        for m in self._conditioned:
            m.clip_singular_values_()

    def _debug_dump(self) -> None:
        """With ``INVERTIBLE_DEBUG_DUMP_DIR`` set, every rank writes its final weights there
        (``rank<r>.safetensors``): the distributed test compares the replicas."""
        folder = os.environ.get("INVERTIBLE_DEBUG_DUMP_DIR")
        if folder:
            from safetensors.torch import save_file

            state = {k: v.detach().cpu().contiguous().clone()
                     for k, v in self.objective.state_dict().items()}
            save_file(state, str(Path(folder) / f"rank{self.dist.rank}.safetensors"))

    def _summary(self, train, val, ips, samples, interrupted=False) -> TrainSummary:
        return TrainSummary(self.step, self.epoch, self._elapsed(), train, val,
                            self.best_val if math.isfinite(self.best_val) else None, ips,
                            self.nonfinite_events, samples, interrupted)

    def _validate_and_save(self, final: bool = False) -> float | None:
        val = self.validate()
        if val is not None:
            self.metrics.write({"step": self.step, "epoch": self.epoch, "val_bpd": val})
            if val < self.best_val:
                self.best_val = val
                self.save("best", {"val_bpd": val})
        elif final:
            self.save("best")
        self.save("latest", {"val_bpd": val})
        return val

    def _on_nonfinite(self, loss: Tensor) -> None:
        """A skipped step: no update. Every ``nonfinite_patience`` events lower the LR."""
        self.nonfinite_events += 1
        record: dict[str, Any] = {"step": self.step, "event": "nonfinite",
                                  "loss": float(loss.detach()), "count": self.nonfinite_events}
        if self.nonfinite_events % self.cfg.nonfinite_patience == 0:
            self.lr_scale *= self.cfg.lr_decay_on_nonfinite
            record["lr_scale"] = self.lr_scale
        self.metrics.write(record)
        if self.writes:
            self.log(f"invertible: warning: non-finite loss at step {self.step}, step skipped"
                     + (f"; learning rate scaled to {self.lr_scale:g}x" if "lr_scale" in record
                        else ""))
