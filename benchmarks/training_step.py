"""Training-step time of the i-ConvNets and the classifier ladder, optionally against an
earlier commit's code, side by side.

One command:

    python benchmarks/training_step.py --baseline c6306f0 --threads 1 2

Workloads: one Adam step (forward, backward, update) of the density models on MNIST-shaped
batches (B = 64, uniform pixels; the time does not depend on the values) and of the ladder's
classifier rows (B = 128). Each worker process builds every workload and times them in turn,
``--steps`` steps each per round, so that machine noise hits them alike. With
``--baseline REV`` the script checks REV out into a temporary git worktree and alternates
worker processes of the two versions for ``--rounds`` rounds (the order flips each round);
the table gives medians over all timed steps, the ratio this checkout / baseline, and the
same ratio after dividing every workload by Glow's time in the same worker process (a
control neither version changes: how fast the shared machine was while a process ran
cancels). Writes benchmarks/results/training_step.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _environment import machine

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

# name -> (kind, model or ladder row, model options)
WORKLOADS: dict[str, tuple[str, str, dict]] = {
    "i-ConvNet, default (depth 4)": ("density", "iconvnet", {}),
    "i-ConvNet, depth 24": ("density", "iconvnet", {"depth": 24}),
    "hybrid i-ConvNet (README's 30-min setting)": (
        "density", "iconvnet",
        {"hybrid": True, "coupling_hidden": 64, "coupling_net": "glow", "slope": 1.0}),
    "iconvnet-paper": ("density", "iconvnet-paper", {}),
    "Glow (reference)": ("density", "glow", {}),
    "ladder row 2, circular padding": ("classify", "circular", {}),
    "ladder row 3, + SneakyReLU": ("classify", "sneaky", {}),
    "ladder row 6, invertible average pooling": ("classify", "avgpool", {}),
}


# Neither version's changes touch it: its ratio shows the noise, and the last column
# divides every workload by it worker by worker.
CONTROL = "Glow (reference)"


def _build(kind: str, name: str, options: dict):
    """``(step function, parameter count)`` for one workload, from the importable code."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    if kind == "density":
        from invertible import build_model

        model = build_model(name, (1, 28, 28), **options)
        x = torch.rand(64, 1, 28, 28)

        def loss():
            return -model.log_prob(x).mean()
    else:
        from invertible.models.classifier import build_convnet

        model = build_convnet((1, 28, 28), 10, name)
        x, y = torch.rand(128, 1, 28, 28), torch.randint(0, 10, (128,))
        model.train()
        model(x)  # ActNorm's data-dependent initialisation

        def loss():
            return F.cross_entropy(model(x), y)
    opt = torch.optim.Adam(model.parameters(), 1e-3)

    def step():
        opt.zero_grad(set_to_none=True)
        loss().backward()
        opt.step()

    return step, sum(p.numel() for p in model.parameters())


def worker(steps: int, threads: int) -> None:
    """Time every workload with the ``invertible`` on ``sys.path``; print JSON."""
    import torch

    torch.set_num_threads(threads)
    built = {name: _build(*spec) for name, spec in WORKLOADS.items()}
    for step, _ in built.values():  # warm-up: allocator, caches, lazy initialisation
        step()
        step()
    times: dict[str, list[float]] = {name: [] for name in built}
    for _ in range(steps):
        for name, (step, _) in built.items():
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
    import invertible

    params = {name: n for name, (_, n) in built.items()}
    print(json.dumps({"times": times, "params": params, "machine": machine(),
                      "package": invertible.__file__}))


def run_worker(src: Path, steps: int, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, __file__, "--worker", "--steps", str(steps),
                          "--threads", str(threads)], env=env, check=True,
                         capture_output=True, text=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if not Path(res["package"]).resolve().is_relative_to(src.resolve()):
        raise SystemExit(f"the worker imported {res['package']}, not the code under {src}")
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", metavar="REV", help="a git revision to compare against")
    p.add_argument("--rounds", type=int, default=3, help="worker processes per version")
    p.add_argument("--steps", type=int, default=5, help="timed steps per workload and round")
    p.add_argument("--threads", type=int, nargs="+", default=[1],
                   help="intra-op thread counts, one table each, run one after the other")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args.steps, args.threads[0])
        return
    versions = {"this checkout": ROOT / "src"}
    tmp = None
    if args.baseline:
        tmp = Path(tempfile.mkdtemp(prefix="baseline-")) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tmp),
                        args.baseline], check=True, capture_output=True)
        versions[f"baseline {args.baseline}"] = tmp / "src"
    sections: list[str] = []
    try:
        for threads in args.threads:
            sections += measure(versions, threads, args)
    finally:
        if tmp is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tmp)],
                           check=False, capture_output=True)
    cmd = " ".join(["python benchmarks/training_step.py", *sys.argv[1:]])
    lines = [
        "# Training-step time, side by side",
        "",
        (f"`{cmd}`: {args.rounds} worker processes per version, alternating; {args.steps} "
         f"timed steps per workload in each; medians over all of them. The ratio is this "
         f"checkout's time over the baseline's. {CONTROL}, which neither version changed, "
         f"shows the noise; the last column first divides each workload's median by the "
         f"control's in the same worker process (how fast the shared machine was while "
         f"that process ran cancels), then takes the median over processes."),
        "",
        *sections,
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "training_step.md").write_text("\n".join(lines))
    print("\n".join(lines))


def measure(versions: dict[str, Path], threads: int, args: argparse.Namespace) -> list[str]:
    """One table: every workload's median step time per version at ``threads`` threads."""
    pooled: dict[str, dict[str, list[float]]] = {v: {} for v in versions}
    # Per worker: each workload's median over the control's (Glow) median, which cancels
    # how fast the shared machine happened to be while that process ran.
    relative: dict[str, dict[str, list[float]]] = {v: {} for v in versions}
    params: dict[str, int] = {}
    info = ""
    order = list(versions)
    for r in range(args.rounds):
        for v in order if r % 2 == 0 else order[::-1]:
            res = run_worker(versions[v], args.steps, threads)
            control = statistics.median(res["times"][CONTROL])
            for name, ts in res["times"].items():
                pooled[v].setdefault(name, []).extend(ts)
                relative[v].setdefault(name, []).append(statistics.median(ts) / control)
            if v == "this checkout":
                params, info = res["params"], res["machine"]
            print(f"{threads} thread(s), round {r + 1}, {v}: done", flush=True)
    names = list(pooled)
    head = ["workload", "params"] + [f"ms / step, {v}" for v in names]
    if len(names) == 2:
        head += ["ratio", f"ratio, relative to {CONTROL}"]
    lines = [f"## {threads} intra-op thread(s)", "",
             f"Machine: {info}; date {time.strftime('%Y-%m-%d')}.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for w in WORKLOADS:
        meds = [1e3 * statistics.median(pooled[v][w]) for v in names]
        row = [w, f"{params.get(w, 0):,}"] + [f"{m:.1f}" for m in meds]
        if len(names) == 2:
            rel = [statistics.median(relative[v][w]) for v in names]
            row += [f"{meds[0] / meds[1]:.2f}", "-" if w == CONTROL else f"{rel[0] / rel[1]:.2f}"]
        lines.append("| " + " | ".join(row) + " |")
    return [*lines, ""]


if __name__ == "__main__":
    main()
