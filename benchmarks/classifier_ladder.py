"""Table 1 of Finzi et al. (2019) on MNIST: the classifier made invertible step by step.

One command (the committed results):

    python benchmarks/classifier_ladder.py --slope 0.3 --slope-variant 0.5 --variant-seeds 3

Each cell is a fresh `invertible train --task classify --model convnet --model-option
step=ROW` run (the same epochs, batch, learning rate and seeds for every row), then
`invertible evaluate` on the 10,000 MNIST test images. Rows 3-6 use SneakyReLU with slope
`--slope`, and with `--slope-variant s` are trained again with slope `s`. Rows 4-6
(invertible bodies) also give the float32 relative reconstruction error of every test image
from its final feature map, and the largest condition number of their circular
convolutions; they are trained without singular-value clipping (`--sv-clip-every 0`) and,
for `--clip-seeds` seeds, with it (`--sv-clip-every N`, singular values kept in [1/b, b]
with `--clip-bound b`). Cells are merged into benchmarks/results/classifier_ladder.json (an
interrupted run resumes) and the markdown table beside it is rewritten. Training runs one
cell at a time with `--threads` threads (default 1). `--timing` instead times every row
side by side in one process (classifier_ladder_timing.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from _environment import machine

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
ROWS = ("base", "circular", "sneaky", "checkerboard", "nn", "avgpool")
INVERTIBLE = ("checkerboard", "nn", "avgpool")
SNEAKY = ("sneaky", *INVERTIBLE)  # the rows whose activation has a slope
LABELS = {
    "base": "1. base: zero padding, ReLU, MaxPool2d",
    "circular": "2. + circular padding",
    "sneaky": "3. + SneakyReLU",
    "checkerboard": "4. + checkerboard downsampling",
    "nn": "5. + invertible nearest-neighbour downsampling (iINN)",
    "avgpool": "6. + invertible average pooling",
}
TRAIN_IMAGES = 54_000


def options_text(options: dict[str, float]) -> str:
    return ",".join(f"{k}={v:g}" for k, v in sorted(options.items()))


def cell_key(row: str, seed: int, clip: int, options: dict[str, float]) -> str:
    extra = f"/{options_text(options)}" if options else ""
    return f"{row}/seed{seed}/clip{clip}{extra}"


def run_cell(row: str, seed: int, clip: int, options: dict[str, float],
             args: argparse.Namespace) -> dict:
    tag = options_text(options).replace(",", "-").replace("=", "")
    out = Path(args.runs) / f"ladder-{row}-s{seed}-clip{clip}{'-' + tag if tag else ''}"
    per_epoch = TRAIN_IMAGES // args.batch_size
    cmd = [sys.executable, "-m", "invertible", "train", "--task", "classify", "--data", "mnist",
           "--data-dir", str(args.data_dir), "--model", "convnet", "--model-option",
           f"step={row}", "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
           "--lr", str(args.lr), "--seed", str(seed), "--sv-clip-every", str(clip),
           "--val-every", str(per_epoch), "--out", str(out), "--force", "--no-progress"]
    for key, value in sorted(options.items()):
        cmd += ["--model-option", f"{key}={value:g}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env)
    ev = subprocess.run([sys.executable, "-m", "invertible", "evaluate", str(out),
                         "--data-dir", str(args.data_dir), "--json"], check=True, env=env,
                        capture_output=True, text=True)
    print(ev.stdout, flush=True)
    figures = json.loads(ev.stdout.strip().splitlines()[-1])
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rates = sorted(m["images_per_s"] for m in metrics if m.get("images_per_s"))
    ips = rates[len(rates) // 2]
    config = json.loads((out / "config.json").read_text())
    from invertible.models.classifier import build_convnet

    model = build_convnet((1, 28, 28), 10, **config["train"]["model_options"])
    return {
        "row": row, "seed": seed, "sv_clip_every": clip, "options": options,
        "epochs": args.epochs,
        "test_accuracy": 1.0 - figures["error"], "params": sum(p.numel() for p in
                                                               model.parameters()),
        "images_per_s": ips, "s_per_epoch": TRAIN_IMAGES / ips,
        "reconstruction_median": figures.get("reconstruction_median"),
        "reconstruction_max": figures.get("reconstruction_max"),
        "condition_number_max": figures.get("condition_number_max"),
        "command": " ".join(cmd[1:]).replace(str(args.runs), "RUNS").replace(
            str(args.data_dir), "DATA"),
        "machine": machine(), "date": time.strftime("%Y-%m-%d"),
    }


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def write_table(cells: dict[str, dict], args: argparse.Namespace) -> None:
    def group(row: str, variant: tuple[int, str]) -> list[dict]:
        return [c for c in cells.values() if c["row"] == row
                and (c["sv_clip_every"], options_text(c.get("options", {}))) == variant]

    base = group("base", (0, ""))
    base_acc = statistics.fmean(c["test_accuracy"] for c in base) if base else math.nan
    some = next(iter(cells.values()))
    lines = [
        "# The classifier ladder (Finzi et al. 2019, Table 1) on MNIST",
        "",
        "`python benchmarks/classifier_ladder.py --slope 0.3 --slope-variant 0.5 --variant-seeds 3`",
        "(see its docstring). Every row trains the",
        (f"same network for {some['epochs']} epochs (batch {args.batch_size}, Adam, peak lr "
        f"{args.lr}, cosine schedule), then is tested on the 10,000 MNIST test images. Accuracy"),
        "is the mean ± sample std over seeds; Δ is the difference of means to row 1. Time per",
        "epoch is the training time alone (54,000 images over the median training images/s),",
        "measured while other one-thread jobs shared the machine: for speed, read",
        "`classifier_ladder_timing.md` (every row timed side by side in one process).",
        "Reconstruction: float32 relative error |x' - x| / |x| of every test image taken to",
        "the final feature map and back (median over images, then the worst image); κ is the",
        "largest condition number of the run's circular convolutions.",
        "",
        f"Machine: {some['machine']}; date {some['date']}.",
        "",
        ("| row | options | sv clip | seeds | params | test accuracy (%) | Δ vs base (points) "
         "| s / epoch | reconstruction median | reconstruction worst | κ max |"),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    variants = sorted({(c["sv_clip_every"], options_text(c.get("options", {})))
                       for c in cells.values()})
    for row in ROWS:
        for variant in variants:
            clip, opts = variant
            g = group(row, variant)
            if not g:
                continue
            acc, sd = _mean_std([100 * c["test_accuracy"] for c in g])
            delta = acc - 100 * base_acc
            delta = 0.0 if abs(delta) < 5e-3 else delta  # no "-0.00"
            t = statistics.median(c["s_per_epoch"] for c in g)
            if row in INVERTIBLE:
                med = statistics.median(c["reconstruction_median"] for c in g)
                worst = max(c["reconstruction_max"] for c in g)
                kappa = max(c["condition_number_max"] for c in g)
                rec = f"{med:.1e} | {worst:.1e} | {kappa:.1f}"
            else:
                rec = "not invertible | | "
            clip_text = "off" if clip == 0 else f"every {clip} steps"
            acc_text = f"{acc:.2f} ± {sd:.2f}" if len(g) > 1 else f"{acc:.2f} (one seed)"
            lines.append(f"| {LABELS[row]} | {opts or 'defaults'} | {clip_text} | {len(g)} | "
                         f"{g[0]['params']:,} | {acc_text} | {delta:+.2f} | {t:.0f} | {rec} |")
    lines += [
        "",
        "Paper values: Table 1 of Finzi et al. (2019) reports CIFAR-10 accuracies; the paper",
        "was not among the material reachable from this machine, so its numbers are not",
        "copied here (no figure is quoted from memory).",
        "",
        "Goals (issue 11): every invertible row within 1.0 point of the base row; relative",
        "reconstruction error <= 1e-4 in float32 on every test image.",
        "",
    ]
    (RESULTS / "classifier_ladder.md").write_text("\n".join(lines))


def time_rows(args: argparse.Namespace) -> None:
    """Training seconds per epoch of every row, side by side in one process: rounds of
    ``--timing-steps`` steps per row in turn (so that machine noise hits every row alike),
    the median per-step time of each row times the steps of an epoch."""
    import torch.nn.functional as F

    from invertible.data import load_dataset
    from invertible.models.classifier import build_convnet

    data = load_dataset("mnist", str(args.data_dir), "train")
    x_all = data.images[:4096].float().add(0.5).div(256)
    y_all = data.labels[:4096]
    variants = [(row, 0) for row in ROWS] + [(row, args.clip_every) for row in INVERTIBLE]
    models, optims = {}, {}
    for row, clip in variants:
        torch.manual_seed(0)
        bound = {"sv_bound": args.clip_bound} if clip else {}
        models[row, clip] = build_convnet((1, 28, 28), 10, row, **bound)
        models[row, clip].train()
        models[row, clip](x_all[: args.batch_size])  # ActNorm init
        optims[row, clip] = torch.optim.Adam(models[row, clip].parameters(), args.lr)
    per_step: dict[tuple[str, int], list[float]] = {v: [] for v in variants}
    step = 0
    for _ in range(args.timing_rounds):
        for v in variants:
            model, opt = models[v], optims[v]
            t0 = time.perf_counter()
            for _ in range(args.timing_steps):
                i = (step * args.batch_size) % (len(x_all) - args.batch_size)
                step += 1
                loss = F.cross_entropy(model(x_all[i:i + args.batch_size]),
                                       y_all[i:i + args.batch_size])
                opt.zero_grad()
                loss.backward()
                opt.step()
                if v[1] and step % v[1] == 0:
                    for conv in model.convolutions():
                        conv.clip_singular_values_()
            per_step[v].append((time.perf_counter() - t0) / args.timing_steps)
    steps = TRAIN_IMAGES // args.batch_size
    base = statistics.median(per_step["base", 0])
    lines = [
        "# The classifier ladder: training time per epoch, side by side",
        "",
        (f"`python benchmarks/classifier_ladder.py --timing` ({args.timing_rounds} rounds of "
        f"{args.timing_steps} steps per row, taken in turn;"),
        (f"batch {args.batch_size}; medians). Machine: {machine()}; date "
        f"{time.strftime('%Y-%m-%d')}."),
        "",
        "| row | sv clip | s / epoch | vs base |",
        "|---|---|---|---|",
    ]
    for row, clip in variants:
        med = statistics.median(per_step[row, clip])
        clip_text = f"every {clip} steps, bound {args.clip_bound:g}" if clip else "off"
        lines.append(f"| {LABELS[row]} | {clip_text} | {med * steps:.1f} | "
                     f"{med / base:.2f}x |")
    lines.append("")
    (RESULTS / "classifier_ladder_timing.md").write_text("\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    p.add_argument("--runs", default="/tmp/ladder-runs", help="where the run folders go")
    p.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--clip-seeds", type=int, default=3,
                   help="seeds of the invertible rows trained with singular-value clipping")
    p.add_argument("--clip-every", type=int, default=10)
    p.add_argument("--clip-bound", type=float, default=2.0,
                   help="sv_bound of the clipped runs: singular values kept in [1/b, b]")
    p.add_argument("--slope", type=float, default=0.5,
                   help="SneakyReLU slope of rows 3-6 (default 0.5, the model's)")
    p.add_argument("--slope-variant", type=float, default=None,
                   help="also train the SneakyReLU rows with this slope")
    p.add_argument("--variant-seeds", type=int, default=1)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--table-only", action="store_true", help="rewrite the table from the JSON")
    p.add_argument("--timing", action="store_true",
                   help="only time every row side by side (classifier_ladder_timing.md)")
    p.add_argument("--timing-rounds", type=int, default=5)
    p.add_argument("--timing-steps", type=int, default=10)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.timing:
        time_rows(args)
        return
    store = RESULTS / "classifier_ladder.json"
    cells: dict[str, dict] = json.loads(store.read_text()) if store.exists() else {}
    if not args.table_only:
        if not (args.data_dir / "t10k-images-idx3-ubyte.gz").exists():
            sys.exit(f"MNIST not found in {args.data_dir} (see ../shared/data/README)")
        inv_rows = [row for row in args.rows if row in INVERTIBLE]

        def opts(row: str, slope: float, **more: float) -> dict[str, float]:
            return {"slope": slope, **more} if row in SNEAKY else dict(more)

        plan: list[tuple[str, int, int, dict[str, float]]] = [
            (row, seed, 0, opts(row, args.slope)) for seed in range(args.seeds)
            for row in args.rows]
        plan += [(row, seed, args.clip_every, opts(row, args.slope, sv_bound=args.clip_bound))
                 for seed in range(args.clip_seeds) for row in inv_rows]
        if args.slope_variant is not None:
            plan += [(row, seed, 0, opts(row, args.slope_variant))
                     for seed in range(args.variant_seeds) for row in args.rows
                     if row in SNEAKY]
        for row, seed, clip, options in plan:
            key = cell_key(row, seed, clip, options)
            if key in cells and cells[key]["epochs"] == args.epochs:
                continue
            cells[key] = run_cell(row, seed, clip, options, args)
            store.write_text(json.dumps(cells, indent=1, sort_keys=True))
            write_table(cells, args)
    write_table(cells, args)
    print((RESULTS / "classifier_ladder.md").read_text())


if __name__ == "__main__":
    main()
