"""Rate-distortion on MNIST: PCA, a convolutional autoencoder and the invertible autoencoder.

One command:

    python benchmarks/rate_distortion.py --budget 150 --threads 1

For each code size k in {2, 4, 8, 16, 32, 64, 128, 784} it reports the test MSE and PSNR per
pixel on the 10,000 MNIST test images (pixels as bin centres (level + 0.5) / 256 in [0, 1]):

- PCA (scikit-learn) fitted on the training images;
- an ordinary convolutional autoencoder with about the invertible one's parameter count,
  trained for the same wall-clock budget per k;
- the invertible autoencoder (`invertible train --task autoencoder --code-size k`, Glow),
  one run per k, same budget.

The models are trained one at a time, never side by side. It also reports, for the
64-dimensional codes of each method, the test accuracy of a logistic regression trained on
the codes of 10,000 training images, and whether each method is exact at k = 784 and can
sample. Results go to benchmarks/results/rate_distortion.{json,md}; cells are merged into
the JSON, so methods can be run separately (--methods).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from _environment import machine
from torch import nn

import invertible as inv
from invertible.training.objectives.autoencoder import AutoencoderObjective

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
KS = [2, 4, 8, 16, 32, 64, 128, 784]
GLOW = {"levels": 2, "depth": 4, "hidden": 48}
# `invertible train --task autoencoder`'s default; Glow's density default (2e-3) diverged
# here after ~80 steps (bits/dim 5.7 -> 10.4, MSE 0.02 -> 0.13).
AE_LR = 5e-4


def centres(levels: torch.Tensor) -> torch.Tensor:
    return (levels.float() + 0.5) / 256


def psnr(mse: float) -> float:
    return 10 * math.log10(1 / mse) if mse > 0 else math.inf


def logistic_accuracy(train_codes, train_y, test_codes, test_y) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_codes)
    clf = LogisticRegression(max_iter=2000).fit(scaler.transform(train_codes), train_y)
    return float(clf.score(scaler.transform(test_codes), test_y))


# -- PCA ------------------------------------------------------------------------------------
def run_pca(train, test) -> dict:
    from sklearn.decomposition import PCA

    xtr = centres(train.x).flatten(1).double().numpy()
    xte = centres(test.x).flatten(1).double().numpy()
    cells = {}
    t0 = time.time()
    pca = PCA(n_components=784, svd_solver="full").fit(xtr)
    fit_s = time.time() - t0
    for k in KS:
        codes = (xte - pca.mean_) @ pca.components_[:k].T
        rec = codes @ pca.components_[:k] + pca.mean_
        err = rec - xte
        mse = float((err**2).mean())
        cells[k] = {"mse": mse, "psnr": psnr(mse), "max_abs": float(np.abs(err).max())}
    tr64 = (xtr[:10_000] - pca.mean_) @ pca.components_[:64].T
    te64 = (xte - pca.mean_) @ pca.components_[:64].T
    acc = logistic_accuracy(tr64, train.y[:10_000].numpy(), te64, test.y.numpy())
    return {"cells": cells, "acc64": acc, "params": 784 * 784 + 784, "train_s": fit_s,
            "exact_784": cells[784]["max_abs"] <= 1e-5, "samples": False}


# -- ordinary convolutional autoencoder -----------------------------------------------------
class ConvAE(nn.Module):
    """28x28 -> conv 32 /2 -> conv 64 /2 -> dense ``hidden`` -> k, and the mirror back.

    The dense layers carry most of the parameters (cheap to run), so a parameter count
    matched to the invertible autoencoder still trains thousands of steps in the budget.
    """

    def __init__(self, k: int, hidden: int) -> None:
        super().__init__()
        self.enc = nn.Sequential(
            nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
            nn.Flatten(), nn.Linear(64 * 49, hidden), nn.ReLU(), nn.Linear(hidden, k))
        self.dec = nn.Sequential(
            nn.Linear(k, hidden), nn.ReLU(), nn.Linear(hidden, 64 * 49), nn.ReLU(),
            nn.Unflatten(1, (64, 7, 7)), nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(32, 1, 4, 2, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(self.enc(x))


def conv_ae_width(k: int, target: int) -> int:
    """The dense width whose parameter count is closest to ``target``."""
    def count(h: int) -> int:
        return sum(p.numel() for p in ConvAE(k, h).parameters())

    return min(range(16, 1024, 8), key=lambda h: abs(count(h) - target))


def run_conv_ae(train, test, k: int, budget: float, target_params: int, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    width = conv_ae_width(k, target_params)
    model = ConvAE(k, width)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xtr = centres(train.x)
    steps, t0 = 0, time.perf_counter()
    g = torch.Generator().manual_seed(seed)
    while time.perf_counter() - t0 < budget:
        idx = torch.randint(len(xtr), (64,), generator=g)
        lr = 1e-3 * 0.5 * (1 + math.cos(math.pi * min(1.0, (time.perf_counter() - t0) / budget)))
        for group in opt.param_groups:
            group["lr"] = lr
        loss = (model(xtr[idx]) - xtr[idx]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    model.eval()
    xte = centres(test.x)
    with torch.no_grad():
        rec = torch.cat([model(xte[s : s + 500]) for s in range(0, len(xte), 500)])
        err = rec - xte
        codes = (torch.cat([model.enc(xte[s : s + 500]) for s in range(0, len(xte), 500)])
                 if k == 64 else None)
        tr_codes = model.enc(xtr[:10_000]) if k == 64 else None
    mse = float(err.pow(2).mean())
    cell = {"mse": mse, "psnr": psnr(mse), "max_abs": float(err.abs().max()), "steps": steps,
            "params": sum(p.numel() for p in model.parameters()), "width": width}
    if codes is not None and tr_codes is not None:
        cell["acc64"] = logistic_accuracy(tr_codes.numpy(), train.y[:10_000].numpy(),
                                          codes.numpy(), test.y.numpy())
    return cell


# -- the invertible autoencoder -------------------------------------------------------------
def run_iae(k: int, budget: float, data_dir: Path, runs: Path, test, train) -> dict:
    cfg = inv.TrainConfig(task="autoencoder", task_options={"code_size": k}, data="mnist",
                          data_dir=str(data_dir), model="glow", model_options=dict(GLOW),
                          max_time=budget, lr=AE_LR, batch_size=64, val_every=0, seed=0)
    tr = inv.load_split(cfg, "train")
    objective = inv.build_objective(cfg, tr.info())
    out = runs / f"iae-k{k}"
    summary = inv.Trainer(cfg, objective, tr, None, out, progress=False).fit()
    assert isinstance(objective, AutoencoderObjective)
    with torch.no_grad():
        curve = objective.rate_distortion(test, [k])[k]
    cell = {**curve, "steps": summary.step,
            "params": sum(p.numel() for p in objective.parameters())}
    if k == 64:
        with torch.no_grad():
            te = torch.cat([objective.ae.encode(objective.center(test.x[s : s + 500]), 64)
                            for s in range(0, len(test), 500)])
            trc = objective.ae.encode(objective.center(train.x[:10_000]), 64)
        cell["acc64"] = logistic_accuracy(trc.numpy(), train.y[:10_000].numpy(), te.numpy(),
                                          test.y.numpy())
    return cell


def write_table(results: dict) -> None:
    intro = ("Test MSE per pixel (PSNR in dB), pixels in [0, 1], all 10,000 test images. "
             "Command: `python benchmarks/rate_distortion.py "
             f"--budget {results.get('budget_s')} --threads {results.get('threads')}`. "
             f"Machine: {results.get('machine')}.")
    lines = ["# Rate-distortion on MNIST", "", intro, "",
             "| k | PCA | conv AE | invertible AE | conv AE steps | invertible AE steps |",
             "|---|---|---|---|---|---|"]
    for k in KS:
        row = [str(k)]
        for method in ("pca", "conv_ae", "iae"):
            cell = results.get(method, {}).get("cells", {}).get(str(k))
            row.append(f"{cell['mse']:.2e} ({cell['psnr']:.1f})" if cell else "—")
        for method in ("conv_ae", "iae"):
            cell = results.get(method, {}).get("cells", {}).get(str(k))
            row.append(f"{cell['steps']:,}" if cell else "—")
        lines.append("| " + " | ".join(row) + " |")
    header = ("| method | parameters | exact at k = 784 (max abs error) | samples | "
              "logistic regression on 64-d codes |")
    lines += ["", header, "|---|---|---|---|---|"]
    for method, label in (("pca", "PCA"), ("conv_ae", "conv AE"), ("iae", "invertible AE")):
        r = results.get(method)
        if not r:
            continue
        worst = r["cells"].get("784", {}).get("max_abs")
        exact = "—" if worst is None else f"{'yes' if worst <= 1e-5 else 'no'} ({worst:.1e})"
        acc = r.get("acc64")
        lines.append(f"| {label} | {r.get('params', '—'):,} | {exact} | "
                     f"{'yes' if r.get('samples') else 'no'} | "
                     f"{'—' if acc is None else f'{acc:.4f}'} |")
    longer = results.get("longer", [])
    if longer:
        lines += ["", "Longer budgets (`--longer`, one cell each, same settings otherwise):", "",
                  "| method | k | budget (s) | test MSE (PSNR) | steps |", "|---|---|---|---|---|"]
        for c in sorted(longer, key=lambda c: (c["method"], c["k"], c["budget_s"])):
            lines.append(f"| {c['method']} | {c['k']} | {c['budget_s']:.0f} | {c['mse']:.2e} "
                         f"({c['psnr']:.1f}) | {c['steps']:,} |")
    lines += ["", "Notes:", *[f"- {n}" for n in results.get("notes", [])]]
    (RESULTS / "rate_distortion.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    ap.add_argument("--budget", type=float, default=150.0, help="seconds per trained model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--methods", nargs="+", default=["pca", "conv_ae", "iae"])
    ap.add_argument("--ks", nargs="+", type=int, default=KS)
    ap.add_argument("--runs", type=Path, default=Path("/tmp/rate_distortion_runs"))
    ap.add_argument("--longer", action="store_true",
                    help="record the cells in the 'longer budgets' table, not the main one")
    ap.add_argument("--table-only", action="store_true",
                    help="rewrite the markdown table from the JSON and stop")
    args = ap.parse_args()
    if args.table_only:
        write_table(json.loads((RESULTS / "rate_distortion.json").read_text()))
        return
    torch.set_num_threads(args.threads)
    path = RESULTS / "rate_distortion.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    if not args.longer:
        results.update({"budget_s": args.budget, "threads": torch.get_num_threads(),
                        "machine": machine(), "date": time.strftime("%Y-%m-%d")})
    base = inv.TrainConfig(data="mnist", data_dir=str(args.data_dir))
    train, test = inv.load_split(base, "train"), inv.load_split(base, "test")
    probe = inv.TrainConfig(task="autoencoder", task_options={"code_size": 64}, model="glow",
                            model_options=dict(GLOW))
    iae_params = sum(p.numel() for p in inv.build_objective(probe, train.info()).parameters())

    def save() -> None:
        path.write_text(json.dumps(results, indent=1, sort_keys=True))
        write_table(results)

    if "pca" in args.methods:
        results["pca"] = {**run_pca(train, test)}
        results["pca"]["cells"] = {str(k): v for k, v in results["pca"]["cells"].items()}
        save()
    for method in ("conv_ae", "iae"):
        if method not in args.methods:
            continue
        r = results.setdefault(method, {"cells": {}})
        r["samples"] = method == "iae"
        for k in args.ks:
            print(f"{method} k={k} ({args.budget:.0f} s)", flush=True)
            cell = (run_conv_ae(train, test, k, args.budget, iae_params) if method == "conv_ae"
                    else run_iae(k, args.budget, args.data_dir, args.runs, test, train))
            print(json.dumps(cell), flush=True)
            if args.longer:
                results.setdefault("longer", []).append(
                    {"method": method, "k": k, "budget_s": args.budget, **cell})
                save()
                continue
            r["cells"][str(k)] = cell
            r["params"] = cell["params"]
            if "acc64" in cell:
                r["acc64"] = cell["acc64"]
            save()


if __name__ == "__main__":
    main()
