"""A flow that classifies (FlowGMM) on MNIST: accuracy and bits/dim from one model, and the
out-of-distribution check.

One command:

    python benchmarks/flowgmm_mnist.py

It trains `invertible train --task classify --model glow` (a Glow whose latent has one
Gaussian per class) for `--epochs` epochs with `--threads` threads, evaluates it on the
10,000 MNIST test images (`invertible evaluate`), and scores bits/dim per image on three
sets: the MNIST test images, uniform noise images and the inverted test images (255 - x).
It writes benchmarks/results/flowgmm_mnist.md (table), flowgmm_mnist.json and
flowgmm_ood.png (the bits/dim histograms).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _environment import machine
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


@torch.no_grad()
def bits_per_image(objective: object, levels: torch.Tensor, batch: int = 500) -> np.ndarray:
    """Marginal bits/dim ``-log p(x)`` of every image (uniform dequantization, fixed seed)."""
    from invertible.training.objectives import fixed_rng

    out = []
    objective.eval()  # type: ignore[attr-defined]
    labels = torch.zeros(len(levels), dtype=torch.long)  # unused by the marginal
    with fixed_rng(0, torch.device("cpu")):
        for i in range(0, len(levels), batch):
            out.append(objective(levels[i:i + batch], labels[i:i + batch])["bpd"])  # type: ignore[operator]
    return torch.cat(out).double().numpy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    p.add_argument("--run", default="/tmp/flowgmm-mnist", help="the run folder")
    p.add_argument("--model", default="glow")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--w-class", type=float, default=0.0,
                   help="extra weight on -log p(y | x) (0: FlowGMM as published)")
    p.add_argument("--mean-scale", type=float, default=None,
                   help="scale of the class means (default: the task's, 1)")
    p.add_argument("--tag", default="", help="suffix of the result files (a second model)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--noise", type=int, default=2000, help="uniform-noise images scored")
    p.add_argument("--reuse", action="store_true", help="score an existing --run folder")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    cmd = [sys.executable, "-m", "invertible", "train", "--task", "classify", "--data",
           "mnist", "--data-dir", str(args.data_dir), "--model", args.model, "--epochs",
           str(args.epochs), "--out", args.run, "--force", "--no-progress"]
    if args.w_class:
        cmd += ["--task-option", f"w_class={args.w_class:g}"]
    if args.mean_scale is not None:
        cmd += ["--task-option", f"mean_scale={args.mean_scale:g}"]
    t0 = time.time()
    if not args.reuse:
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, env=env)
    wall = time.time() - t0
    ev = subprocess.run([sys.executable, "-m", "invertible", "evaluate", args.run,
                         "--data-dir", str(args.data_dir), "--json"], check=True, env=env,
                        capture_output=True, text=True)
    print(ev.stdout, flush=True)
    figures = json.loads(ev.stdout.strip().splitlines()[-1])

    from invertible.training import load_split, open_run
    from invertible.training.plots import save_histograms

    run = open_run(args.run)
    test = load_split(run.config, "test", str(args.data_dir))
    g = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 256, (args.noise, *test.shape), generator=g, dtype=torch.uint8)
    sets = {"MNIST test": test.x, "uniform noise": noise, "inverted MNIST (255 - x)":
            255 - test.x}
    bpd = {name: bits_per_image(run.objective, x) for name, x in sets.items()}
    save_histograms(bpd, RESULTS / f"flowgmm_ood{args.tag}.png", "bits/dim",
                    f"FlowGMM ({args.model}) trained on MNIST")
    auroc = {}
    for name in list(sets)[1:]:
        # Higher bits/dim should flag the outlier: AUROC 1 is perfect, 0.5 chance, 0 reversed.
        scores = np.concatenate([bpd["MNIST test"], bpd[name]])
        is_out = np.r_[np.zeros(len(bpd["MNIST test"])), np.ones(len(bpd[name]))]
        auroc[name] = float(roc_auc_score(is_out, scores))
    metrics = [json.loads(line) for line in (Path(args.run) / "metrics.jsonl").read_text()
               .splitlines()]
    rates = sorted(m["images_per_s"] for m in metrics if m.get("images_per_s"))
    result = {
        "model": args.model, "epochs": args.epochs, "steps": figures["step"],
        "test_accuracy": 1 - figures["error"], "test_bpd": figures["bpd"],
        "test_bpd_with_label": figures.get("pair_bpd", figures["loss"]),
        "bpd_ci95": 1.96 * figures["bpd_std"] / figures["n"] ** 0.5,
        "images_per_s": rates[len(rates) // 2] if rates else None,
        "train_wall_s": round(wall, 1) if not args.reuse else None,
        "median_bpd": {k: float(np.median(v)) for k, v in bpd.items()},
        "auroc": auroc, "command": " ".join(cmd[1:]).replace(str(args.data_dir), "DATA"),
        "machine": machine(), "date": time.strftime("%Y-%m-%d"),
    }
    (RESULTS / f"flowgmm_mnist{args.tag}.json").write_text(json.dumps(result, indent=1))
    lines = [
        "# FlowGMM on MNIST: one model, accuracy and bits/dim",
        "",
        "`python benchmarks/flowgmm_mnist.py` (see its docstring): `" + result["command"] + "`.",
        "",
        (f"Machine: {result['machine']}; date {result['date']}; {result['steps']} steps, "
        f"median {result['images_per_s']:.0f} training images/s."),
        "",
        "| test accuracy | test bits/dim | bits/dim of (image, label) |",
        "|---|---|---|",
        (f"| {100 * result['test_accuracy']:.2f}% | {result['test_bpd']:.3f} ± "
        f"{result['bpd_ci95']:.3f} | {result['test_bpd_with_label']:.3f} |"),
        "",
        "Out of distribution: bits/dim per image under the same model (histograms in",
        f"`flowgmm_ood{args.tag}.png`). AUROC: how well a higher bits/dim flags the outlier",
        "set against the MNIST test images (1 perfect, 0.5 chance, below 0.5 the outliers",
        "look *more* likely than the data).",
        "",
        "| set | images | median bits/dim | AUROC vs MNIST test |",
        "|---|---|---|---|",
    ]
    for name, x in sets.items():
        au = f"{auroc[name]:.3f}" if name in auroc else "-"
        lines.append(f"| {name} | {len(x)} | {result['median_bpd'][name]:.3f} | {au} |")
    lines.append("")
    (RESULTS / f"flowgmm_mnist{args.tag}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
