"""``invertible train``: fit a model for a task (``--task``) on a dataset; write a run folder."""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .common import (
    UsageError,
    model_option,
    nonneg_int,
    positive_float,
    positive_int,
    resolve_device,
    say,
    unit_float,
    warn,
)

if TYPE_CHECKING:
    from ..training.config import TrainConfig
    from ..training.datasets import Split
    from ..training.paths import RunPaths

# Defaults for a first run on the embedded digits: about 3 minutes on 2 CPU cores.
DEFAULT_DATA = "digits"
DEFAULT_EPOCHS = {"digits": 150}
DEFAULT_MAX_TIME = {"digits": 170.0}
# Glow for images: on the 8x8 digits it takes ~3.6x more steps than the hybrid i-ConvNet in
# the same 3 minutes (each circular convolution adds an FFT-sized spectrum and per-frequency
# log-dets that dominate on tiny images) and its samples are recognisable digits; it also
# has the conditioner a --conditional run needs. The i-ConvNets are --model iconvnet,
# iconvnet-paper (README, "The i-ConvNet").
DEFAULT_MODELS = {"image": "glow", "vector": "maf"}
# Tasks whose default peak learning rate overrides the model's: the autoencoder's dense
# PCA head and three passes per step diverged at Glow's 2e-3 (MNIST, after ~80 steps).
TASK_LRS = {"autoencoder": 5e-4, "vae": 1e-3}
# The ladder classifier is not in the flow registry; 2e-3 is what its benchmark used.
CLASSIFIER_LRS = {"convnet": 2e-3}

# Options that may change when a run is resumed (the rest define the run).
_RESUMABLE = {"epochs", "steps", "max_time", "device", "val_every", "sample_every", "data_dir",
              "check_every", "log_every"}
_MODEL_OPTIONS = ("levels", "depth", "hidden")


def add_parser(sub: Any) -> None:
    from ..training.objectives import task_names

    p = sub.add_parser(
        "train",
        help="train a model for a task and write a run folder",
        description=(
            "Train a model. Without options: a density model (normalizing flow) on the "
            "embedded 8x8 digits for about 3 minutes on 2 CPU cores. Under 'torchrun "
            "--nproc_per_node=N' training is data-parallel; --batch-size is per process "
            "(global batch = N x it). SIGINT or SIGTERM stops cleanly and saves the latest "
            "checkpoint; continue with --resume."
        ),
    )
    d = p.add_argument_group("task, data and model")
    d.add_argument("--task", choices=task_names(), default=None,
                   help="what to train for (default density: maximum likelihood; "
                   "autoencoder; classify)")
    d.add_argument("--code-size", type=positive_int, default=None, metavar="K",
                   help="autoencoder task: latent coordinates kept in the code")
    d.add_argument("--task-option", type=model_option, action="append", default=None,
                   metavar="KEY=VALUE", dest="task_option",
                   help="a setting of the task's objective, VALUE read as JSON; repeatable "
                   "(autoencoder: w_mse, w_code, w_tail, w_nll, nested, pca_head; flow "
                   "classifier: mean_scale, w_class)")
    d.add_argument("--conditional", action="store_true", default=None,
                   help="density task on labelled data: learn p(x | label), the one-hot class "
                   "label being the context of the flow's conditioner networks (models glow, "
                   "the default for images; realnvp; iconvnet with hybrid=true; maf; "
                   "nsf-coupling; nsf-ar); then 'invertible sample RUN --label K'")
    d.add_argument("--data", default=None, help=f"dataset name (default {DEFAULT_DATA})")
    d.add_argument("--data-dir", default=None, help="folder with the dataset's files")
    d.add_argument("--download", action="store_true", default=None,
                   help="download the dataset into --data-dir if missing (checksummed)")
    d.add_argument("--val-fraction", type=unit_float, default=None, metavar="F",
                   help="fraction of the training images held out for validation (default "
                   "0.1; the split is fixed by --seed)")
    d.add_argument("--image-size", type=positive_int, default=None,
                   help="resize images to this size (folder datasets)")
    d.add_argument("--grayscale", action="store_true", default=None,
                   help="convert images to one grey channel")
    d.add_argument("--model", default=None,
                   help="glow (default for images), iconvnet, iconvnet-paper, realnvp, maf (vectors), "
                   "elementwise; for --task classify: convnet (the Table 1 ladder, default; "
                   "--model-option step=base|circular|sneaky|checkerboard|nn|avgpool) or a "
                   "flow, which makes a FlowGMM classifier")
    d.add_argument("--levels", type=positive_int, default=None, help="model scales (multi-scale)")
    d.add_argument("--depth", type=positive_int, default=None, help="flow steps per scale")
    d.add_argument("--hidden", type=positive_int, default=None, help="hidden channels/units")
    d.add_argument("--model-option", type=model_option, action="append", default=None,
                   metavar="KEY=VALUE", dest="model_option",
                   help="any other option of the model's builder, VALUE read as JSON when it "
                   "parses (e.g. hybrid=true, downsample=haar, kernel_size=5); repeatable")
    d.add_argument("--dequant", choices=["uniform", "variational"], default=None,
                   help="dequantization of integer pixels (default uniform)")
    b = p.add_argument_group("budget (training stops at the first one reached)")
    b.add_argument("--epochs", type=positive_int, default=None)
    b.add_argument("--steps", type=positive_int, default=None)
    b.add_argument("--max-time", type=positive_float, default=None, metavar="SECONDS",
                   help="wall-clock budget; stops cleanly, saves and evaluates")
    o = p.add_argument_group("optimisation")
    o.add_argument("--batch-size", type=positive_int, default=None,
                   help="images per step and per process (default 64)")
    from ..models.registry import model_lrs

    own = ", ".join(f"{name} {lr:g}" for name, lr in model_lrs().items())
    o.add_argument("--lr", type=positive_float, default=None,
                   help=f"peak learning rate (default 1e-3; models with their own: {own}, "
                   "convnet 2e-3; the autoencoder task: 5e-4)")
    o.add_argument("--schedule", choices=["constant", "cosine"], default=None,
                   help="learning-rate schedule after warm-up (default cosine)")
    o.add_argument("--warmup", type=nonneg_int, default=None, help="warm-up steps (100)")
    o.add_argument("--weight-decay", type=float, default=None)
    o.add_argument("--grad-clip", type=positive_float, default=None,
                   help="clip the gradient norm (default 50)")
    o.add_argument("--ema", type=unit_float, default=None,
                   help="EMA decay of the weights used for evaluation/sampling (0 = off)")
    o.add_argument("--amp", action="store_true", default=None,
                   help="bfloat16 autocast (CPU or CUDA); FFT convolutions stay float32")
    o.add_argument("--seed", type=int, default=None)
    o.add_argument("--device", default=None, help="cpu (default), cuda, cuda:N or auto")
    dp = p.add_argument_group(
        "differential privacy (DP-SGD by opacus; needs the [privacy] extra)",
        "Per-sample gradients are clipped to --dp-max-grad-norm and Gaussian noise is added, "
        "calibrated so that the whole step budget spends --dp-epsilon at --dp-delta; batches "
        "are Poisson samples of expected size --batch-size. Density task, one process.")
    dp.add_argument("--dp-epsilon", type=positive_float, default=None, metavar="E",
                    help="train with DP-SGD to this epsilon (needs --epochs or --steps)")
    dp.add_argument("--dp-delta", type=positive_float, default=None, metavar="D",
                    help="delta of the guarantee (default 1e-5; keep it below 1/N)")
    dp.add_argument("--dp-max-grad-norm", type=positive_float, default=None, metavar="C",
                    help="per-sample gradient clipping bound (default 1.0)")
    dp.add_argument("--dp-accountant", choices=["rdp", "prv"], default=None,
                    help="opacus accountant for calibration and the spent epsilon (default rdp)")
    dp.add_argument("--dp-chunk", type=positive_int, default=None, metavar="N",
                    help="examples per vectorised per-sample-gradient pass (memory; default 64)")
    r = p.add_argument_group("outputs")
    r.add_argument("--out", default=None,
                   help="run folder (default runs/DATA-MODEL-TIME); must be new or empty")
    r.add_argument("--force", action="store_true", help="reuse a non-empty --out folder")
    r.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue a run from its latest checkpoint")
    r.add_argument("--val-every", type=nonneg_int, default=None,
                   help="validate and checkpoint every N steps (default: about 10 times a "
                   "run; 0 = never, checkpoints at the end only)")
    r.add_argument("--sample-every", type=nonneg_int, default=None,
                   help="write the task's pictures every N steps (default: with validation; "
                   "0 = at the end only)")
    r.add_argument("--check-every", type=positive_int, default=None,
                   help="read the non-finite-step flag every N steps (default 1: exact skips; "
                   "N > 1 avoids a GPU sync per step, bad steps then apply zero gradients)")
    o.add_argument("--sv-clip-every", type=nonneg_int, default=None,
                   help="project circular convolutions into their singular-value bounds "
                   "every N steps (default 1, 0 = never)")
    r.add_argument("--log-every", type=positive_int, default=None)
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--no-sample-score", action="store_true",
                   help="density runs on labelled images: skip the final sample-quality score "
                   "(1000 samples rated by a classifier trained on the real train split; a "
                   "few seconds on the digits, up to a minute on MNIST)")
    p.set_defaults(run=run)


def _given(args: argparse.Namespace) -> dict[str, Any]:
    skip = {"command", "run", "out", "force", "resume", "no_progress", "no_sample_score",
            "model_option", "task_option", "code_size", *_MODEL_OPTIONS}
    return {k: v for k, v in vars(args).items() if v is not None and k not in skip}


def _fresh_config(args: argparse.Namespace) -> TrainConfig:
    from ..training.config import TrainConfig

    given = _given(args)
    cfg = TrainConfig(**{k: v for k, v in given.items()})
    cfg.data = given.get("data", DEFAULT_DATA)
    cfg.model_options = {k: getattr(args, k) for k in _MODEL_OPTIONS
                         if getattr(args, k) is not None}
    for key, value in args.model_option or []:
        if key in cfg.model_options:
            raise UsageError(f"model option '{key}' is given twice")
        cfg.model_options[key] = value
    if args.code_size is not None:
        cfg.task_options["code_size"] = args.code_size
    for key, value in args.task_option or []:
        if key in cfg.task_options:
            raise UsageError(f"task option '{key}' is given twice")
        cfg.task_options[key] = value
    dp_given = [k for k in ("dp_delta", "dp_max_grad_norm", "dp_accountant", "dp_chunk")
                if k in given]
    if dp_given and cfg.dp_epsilon is None:
        raise UsageError(f"--{dp_given[0].replace('_', '-')} needs --dp-epsilon (DP training)")
    if cfg.epochs is None and cfg.steps is None and cfg.max_time is None:
        cfg.epochs = DEFAULT_EPOCHS.get(cfg.data, 20)
        cfg.max_time = DEFAULT_MAX_TIME.get(cfg.data)
    return cfg


def _resumed_config(
    args: argparse.Namespace,
) -> tuple[RunPaths, TrainConfig, dict[str, Any]]:
    from ..training.run import read_run_config

    paths, cfg, data = read_run_config(args.resume)
    given = _given(args)
    fixed = sorted(k for k in given if k not in _RESUMABLE)
    fixed += [k for k in (*_MODEL_OPTIONS, "model_option", "task_option", "code_size")
              if getattr(args, k) is not None]
    if fixed:
        names = ", ".join("--" + k.replace("_", "-") for k in fixed)
        raise UsageError(f"{names} cannot change when resuming (they define the run)")
    budget = [k for k in ("epochs", "steps") if k in given and given[k] != getattr(cfg, k)]
    if cfg.dp_epsilon is not None and budget:
        raise UsageError(f"--{budget[0]} cannot change when resuming a DP run: its noise was "
                         "calibrated to the step budget it started with")
    for k, v in given.items():
        setattr(cfg, k, v)
    return paths, cfg, data


_OUR_FILES = ("config.json", "metrics.jsonl", "loss.png", "checkpoints", "samples",
              "score_classifier.safetensors", "score_classifier.json")


def _prepare_out(out: Path, force: bool) -> None:
    """Refuse a non-empty folder unless ``force``; then clear only our own files in it."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UsageError(f"--out {out} exists and is not empty (use --force, or --resume {out})")


def _clear_ours(out: Path) -> None:
    for name in _OUR_FILES:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def run(args: argparse.Namespace) -> int:
    from ..models.registry import model_lrs
    from ..training import distributed as D
    from ..training.datasets import load_split
    from ..training.loop import Trainer, default_val_every
    from ..training.objectives import build_objective
    from ..training.paths import RunPaths
    from ..training.run import eval_state, load_weights, write_run_config

    resume = args.resume is not None
    if resume:
        if args.out is not None and Path(args.out).resolve() != Path(args.resume).resolve():
            raise UsageError("--resume continues in its own folder; leave out --out")
        paths, cfg, data_info = _resumed_config(args)
    else:
        cfg = _fresh_config(args)
        data_info = None
    cfg.validate()
    device = resolve_device(cfg.device)

    # Every rank checks the output before the process group forms; only rank 0 writes.
    env = D.env_info()
    if not resume:
        if args.out is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            args.out = f"runs/{cfg.data}-{cfg.model or 'default'}-{stamp}"
        out = Path(args.out)
        _prepare_out(out, args.force)
        paths = RunPaths(out)
    if device.type == "cuda" and env.enabled:
        device = torch.device("cuda", env.local_rank)
    dist_info = D.init_distributed(device)

    try:
        train = load_split(cfg, "train")
        val = load_split(cfg, "val")
        test = load_split(cfg, "test")
        if cfg.model is None:
            cfg.model = _default_model(train.kind, cfg.task)
        if not resume and args.lr is None:
            cfg.lr = (TASK_LRS.get(cfg.task) or model_lrs().get(cfg.model)
                      or CLASSIFIER_LRS.get(cfg.model, cfg.lr))
        if data_info is not None and list(train.shape) != list(data_info["shape"]):
            raise UsageError(f"the data now has shape {train.shape}, the run used "
                             f"{tuple(data_info['shape'])}")
        data_info = train.info()
        if cfg.val_every is None:
            cfg.val_every = default_val_every(cfg, len(train), dist_info.world_size)
        if cfg.sample_every is None:
            cfg.sample_every = cfg.val_every
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        objective = build_objective(cfg, data_info)
        state = None
        if resume:
            _, *state = load_weights(paths, "latest", warn)
        elif dist_info.is_main:
            paths.root.mkdir(parents=True, exist_ok=True)
            _clear_ours(paths.root)
            write_run_config(paths, cfg, data_info, dist_info.world_size)
        D.barrier()
        if dist_info.is_main:
            what = "resuming" if resume else "training"
            budget = ", ".join(f"{k} {v}" for k, v in (("epochs", cfg.epochs),
                               ("steps", cfg.steps), ("max-time", cfg.max_time)) if v)
            n_par = sum(p.numel() for p in objective.parameters())
            task = f"{cfg.task} (given the label)" if cfg.conditional else cfg.task
            say(f"{what} {cfg.model} ({n_par:,} parameters) for {task} on {cfg.data} "
                f"{train.shape} ({len(train)} train / {len(val)} val), {budget}, "
                f"batch {cfg.batch_size} x {dist_info.world_size} process(es), device {device}"
                f" -> {paths.root}")
        trainer = Trainer(cfg, objective, train, val if cfg.val_every else None, paths.root,
                          dist_info=dist_info, device=device,
                          resume=tuple(state) if state else None,  # type: ignore[arg-type]
                          progress=None if not args.no_progress else False)
        if trainer.dp is not None and dist_info.is_main:
            b = trainer.dp.budget
            say(f"DP-SGD: noise multiplier {b.noise_multiplier:.4g}, sample rate "
                f"{b.sample_rate:.4g}, clip {b.max_grad_norm:g}, {b.steps} steps for epsilon "
                f"{cfg.dp_epsilon:g} at delta {b.delta:g} ({b.accountant} accountant)"
                + (f"; the first ActNorm from a Gaussian-mechanism estimate of its input "
                   f"statistics (noise multiplier {trainer.dp.init.noise_multiplier:g}, "
                   f"sample rate {trainer.dp.init.sample_rate:.3g}, in the budget), the "
                   "others at the identity" if trainer.dp.init is not None else ""))
        summary = trainer.fit()
        if summary.interrupted:
            if dist_info.is_main:
                say(f"stopped at step {summary.step}; resume with: invertible train "
                    f"--resume {paths.root}")
            return 130
        # The test split on the best checkpoint (by validation), sharded over ranks.
        test_lines: list[str] = []
        if test is not None:
            _, tensors, _ = load_weights(paths, "best", warn)
            objective.load_state_dict(eval_state(tensors)[0])
            figures = objective.evaluate(test, max(cfg.batch_size, 256), dist_info)
            trainer.metrics.write({"step": summary.step, "event": "test",
                                   **{f"test_{k}": v for k, v in figures.items()}})
            test_lines = objective.describe(figures, "test")
        if dist_info.is_main:
            label, monitor = objective.monitor_label, summary.monitor
            tr = summary.train.get(monitor)
            val_text = f"{summary.best_val:.4f}" if summary.best_val is not None else "n/a"
            ips = f", {summary.images_per_s:.0f} images/s" if summary.images_per_s else ""
            say(f"done: {summary.step} steps ({summary.epoch} epochs) in "
                f"{summary.elapsed:.0f} s{ips}; train {label} "
                f"{'n/a' if tr is None else f'{tr:.4f}'}, best val {label} {val_text}"
                + (f"; {summary.nonfinite_events} non-finite steps skipped"
                   if summary.nonfinite_events else ""))
            for line in test_lines:
                say(line)
            if test is not None and not args.no_sample_score:
                for line in _sample_quality(cfg, objective, train, test, paths):
                    say(line)
            if summary.privacy is not None:
                pv = summary.privacy
                say(f"privacy: ({pv['epsilon_spent']:.3g}, {pv['delta']:g})-DP for the "
                    f"training split after {pv['steps']} steps ({pv['accountant']} "
                    f"accountant, noise multiplier {pv['noise_multiplier']:.4g}); the final "
                    "weights are the released ones")
            for path in summary.artifacts:
                label = path.stem if path.parent == paths.root else path.parent.name
                say(f"{label.replace('_', ' ')}: {path}")
            say(f"run folder: {paths.root} (next: invertible evaluate {paths.root})")
        return 0
    finally:
        D.shutdown()


def _sample_quality(cfg: TrainConfig, objective: Any, train: Split, test: Split,
                    paths: RunPaths) -> list[str]:
    """The sample-quality lines of a density run on images, with the weights the test
    figures used; one line saying why not where it cannot be scored (no labels, DP)."""
    from ..evaluation import cache_stem, score_or_reason

    if cfg.task != "density" or objective.kind != "image":
        return []
    got = score_or_reason(objective, cfg.dp_epsilon is not None, lambda: (train, test),
                          cache_stem(paths.root), warn=warn)
    return [got] if isinstance(got, str) else got.lines()


def _default_model(kind: str, task: str) -> str:
    """The ladder CNN for classification, the VAE for --task vae, the integer flow for
    --task codec, else Glow for images, MAF for vectors."""
    if task == "classify" and kind == "image":
        return "convnet"
    if task == "vae":
        return "vae"
    if task == "codec":
        return "idf"
    return DEFAULT_MODELS[kind]
