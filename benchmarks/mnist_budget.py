"""MNIST under fixed wall-clock budgets: test bits/dim and training images/s per model.

One command:

    python benchmarks/mnist_budget.py --models glow iconvnet --budgets 600 1800

Each (model, budget) cell is a fresh `invertible train --max-time BUDGET` run on the MNIST
IDX files (default ../shared/data/mnist beside the checkout), then `invertible evaluate`
on the 10,000 test images. Results are merged into benchmarks/results/mnist_budget.json
(so cells can be run in separate sessions) and the markdown table beside it is rewritten.
Run it on a quiet machine: the budget is wall-clock time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _environment import machine

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PUBLISHED = {"Glow (Kingma & Dhariwal 2018)": 1.05, "RealNVP (Dinh et al. 2017)": 1.06}


def parameter_count(model: str, options: dict) -> int:
    """Parameters of the named model on MNIST's (1, 28, 28) with a run's model options."""
    from invertible import build_model

    return sum(p.numel() for p in build_model(model, (1, 28, 28), **options).parameters())


def _cell_key(cell: dict) -> tuple:
    """What makes two cells the same measurement (a rerun replaces the older one)."""
    return (cell["model"], cell["budget_s"], cell["extra"], cell["machine"], cell.get("note"))


def run_cell(model: str, budget: int, data_dir: Path, runs: Path, extra: list[str]) -> dict:
    out = runs / f"mnist-{model}-{budget}s"
    cmd = [sys.executable, "-m", "invertible", "train", "--data", "mnist", "--data-dir",
           str(data_dir), "--model", model, "--max-time", str(budget), "--out", str(out),
           "--force", "--no-progress", *extra]
    print("$", " ".join(cmd), flush=True)
    t0 = time.time()
    subprocess.run(cmd, check=True)
    wall = time.time() - t0
    ev = subprocess.run([sys.executable, "-m", "invertible", "evaluate", str(out), "--data-dir",
                         str(data_dir), "--json"], check=True, capture_output=True, text=True)
    print(ev.stdout, flush=True)
    figures = json.loads(ev.stdout.strip().splitlines()[-1])
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    config = json.loads((out / "config.json").read_text())
    rates = [m["images_per_s"] for m in metrics if m.get("images_per_s")]
    return {
        "model": model, "budget_s": budget, "test_bpd": figures["bpd"],
        "ci95": 1.96 * figures["bpd_std"] / figures["n"] ** 0.5, "steps": figures["step"],
        "images_per_s": sorted(rates)[len(rates) // 2] if rates else None,
        "params": parameter_count(config["train"]["model"], config["train"]["model_options"]),
        "wall_s": round(wall, 1), "command": " ".join(cmd[1:]).replace(str(runs), "RUNS"),
        "extra": extra, "machine": machine(), "date": time.strftime("%Y-%m-%d"),
    }


def write_table(cells: list[dict]) -> None:
    lines = [
        "# MNIST under fixed wall-clock budgets",
        "",
        "`python benchmarks/mnist_budget.py` (see its docstring). Test bits/dim on the 10,000",
        "MNIST test images with a 95% interval over images (uniform dequantization);",
        "images/s is the median training throughput logged during the run.",
        "",
        (
            "| model | parameters | budget | test bits/dim | steps | train images/s | machine "
            "| date | note |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in sorted(cells, key=lambda c: (c["model"], c["budget_s"])):
        ips = f"{c['images_per_s']:.0f}" if c["images_per_s"] else "-"
        params = f"{c['params']:,}" if c.get("params") else "-"
        lines.append(f"| {c['model']} {' '.join(c['extra'])} | {params} | {c['budget_s'] // 60} min | "
                     f"{c['test_bpd']:.3f} ± {c['ci95']:.3f} | {c['steps']} | {ips} | "
                     f"{c['machine']} | {c['date']} | {c.get('note', '')} |")
    lines += ["", "Best published values (long GPU training, for scale):", ""]
    lines += [f"- {k}: {v} bits/dim" for k, v in PUBLISHED.items()]
    (RESULTS / "mnist_budget.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["glow", "iconvnet"])
    p.add_argument("--budgets", nargs="+", type=int, default=[600, 1800])
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    p.add_argument("--runs-dir", type=Path, default=None, help="keep run folders here")
    p.add_argument("--note", default="", help="a remark stored with each cell of this run")
    p.add_argument("--table-only", action="store_true",
                   help="only rewrite the markdown table from the JSON results")
    p.add_argument("extra", nargs=argparse.REMAINDER, help="after --: extra train options")
    a = p.parse_args()
    extra = [x for x in a.extra if x != "--"]
    store = RESULTS / "mnist_budget.json"
    if a.table_only:
        write_table(json.loads(store.read_text()))
        return 0
    if not (a.data_dir / "train-images-idx3-ubyte.gz").exists():
        print(f"MNIST not found in {a.data_dir}", file=sys.stderr)
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    runs = a.runs_dir or Path(tempfile.mkdtemp(prefix="mnist_budget_"))
    for model in a.models:
        for budget in a.budgets:
            cell = run_cell(model, budget, a.data_dir, runs, extra)
            if a.note:
                cell["note"] = a.note
            # Read again just before merging: other runs of this script may have written.
            # A rerun replaces its own command's cell on the same machine and thread count,
            # with the same note, only; figures from elsewhere, or noted as another
            # condition (older code, another session), stay as history.
            cells = json.loads(store.read_text()) if store.exists() else []
            cells = [c for c in cells if _cell_key(c) != _cell_key(cell)] + [cell]
            tmp = store.with_suffix(".tmp")
            tmp.write_text(json.dumps(cells, indent=1))
            os.replace(tmp, store)
            write_table(cells)
            print(json.dumps(cell), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
