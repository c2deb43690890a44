"""Privacy on MNIST: the encoded-data release under attack, and DP-SGD at epsilon 1, 3, 8, inf.

One command:

    python benchmarks/privacy_mnist.py --data-dir ../shared/data/mnist

Training (one run at a time, fixed step budgets, so the figures do not depend on the
machine's load; `--threads` threads):

- `release`: the model whose codes are released: Glow (its defaults) for `--release-steps`
  steps, non-private. `release@seed1`: the same architecture trained independently (seed 1),
  for the architecture-only attacker.
- `eps1`, `eps3`, `eps8`: class-conditional Glow (the same Glow, the one-hot label as
  context, a class-conditional prior) trained with `--dp-epsilon E` for `--dp-epochs`
  epochs at expected batch `--dp-batch`, clipping at `--dp-clip`, delta 1e-5.
  `inf`: the same model, steps and batch without DP (plain Adam, no clipping or noise).

Then `invertible privacy-report` on `release` (every attack, utility of the codes) and on
each DP run (membership inference; the utility of 10,000 synthetic samples). The results
go to benchmarks/results/privacy_mnist.json and .md. `--stage train` or `--stage report`
runs one half; a finished run is not retrained unless `--retrain`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
EPSILONS = ("1", "3", "8", "inf")
# Membership inference where it can succeed: 1,200 training images seen ~80 times each.
SMALL = ("small-epsinf", "small-eps8")


def run_args(name: str, args: argparse.Namespace) -> list[str]:
    """The `invertible train` options of run ``name``."""
    if name.startswith("small-"):
        # 2% of the training images, many passes over them: a model that can overfit.
        cmd = ["--model", "glow", "--conditional", "--model-option", "class_prior=true",
               "--val-fraction", "0.98", "--steps", str(args.small_steps), "--batch-size",
               "64", "--val-every", "0", "--seed", "0"]
        eps = name.removeprefix("small-eps")
        if eps != "inf":
            cmd += ["--dp-epsilon", eps, "--dp-delta", str(args.dp_delta),
                    "--dp-max-grad-norm", str(args.dp_clip)]
        return cmd
    if name.startswith("release"):
        seed = "1" if name.endswith("@seed1") else "0"
        return ["--model", "glow", "--steps", str(args.release_steps), "--seed", seed]
    eps = name.removeprefix("eps")
    cmd = ["--model", "glow", "--conditional", "--model-option", "class_prior=true",
           "--epochs", str(args.dp_epochs), "--batch-size", str(args.dp_batch),
           "--val-every", "0", "--seed", "0"]
    if eps != "inf":
        cmd += ["--dp-epsilon", eps, "--dp-delta", str(args.dp_delta),
                "--dp-max-grad-norm", str(args.dp_clip)]
    return cmd


def train(name: str, args: argparse.Namespace, env: dict[str, str]) -> dict[str, object]:
    out = args.runs_dir / name
    record = out / "benchmark_train.json"
    if record.is_file() and not args.retrain:
        print(f"{name}: trained already ({out})", flush=True)
        return json.loads(record.read_text())
    cmd = [sys.executable, "-m", "invertible", "train", "--data", "mnist", "--data-dir",
           str(args.data_dir), *run_args(name, args), "--sample-every", "0", "--out", str(out),
           "--force", "--no-progress"]
    print("$", " ".join(cmd), flush=True)
    t0 = time.time()
    done = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
    print(done.stdout, flush=True)
    rec = {"command": " ".join(["invertible", *cmd[3:]]), "seconds": time.time() - t0,
           "stdout": done.stdout}
    record.write_text(json.dumps(rec, indent=1))
    return rec


def privacy_report(name: str, extra: list[str], args: argparse.Namespace,
                   env: dict[str, str]) -> dict[str, object]:
    """`invertible privacy-report` of run ``name``; a report already made by the same command
    after the run's last checkpoint is reused unless `--rereport`."""
    run = args.runs_dir / name
    cmd = [sys.executable, "-m", "invertible", "privacy-report", str(run), "--data-dir",
           str(args.data_dir), "-o", str(run / "privacy"), "--force", *extra]
    record = run / "privacy" / "benchmark_command.json"
    checkpoint = run / "checkpoints" / "best.safetensors"
    if (not args.rereport and record.is_file()
            and json.loads(record.read_text())["command"] == cmd[3:]
            and record.stat().st_mtime > checkpoint.stat().st_mtime):
        print(f"{name}: report made already by the same command", flush=True)
        return json.loads((run / "privacy" / "privacy_report.json").read_text())
    print("$", " ".join(cmd), flush=True)
    t0 = time.time()
    done = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
    print(done.stdout, flush=True)
    res = json.loads((run / "privacy" / "privacy_report.json").read_text())
    res["seconds"] = time.time() - t0
    (run / "privacy" / "privacy_report.json").write_text(json.dumps(res, indent=1))
    record.write_text(json.dumps({"command": cmd[3:]}))
    return res


def run_record(name: str, args: argparse.Namespace) -> dict[str, object]:
    """Test bits/dim, steps and (DP runs) the privacy record, from the run's metrics log."""
    recs = [json.loads(line) for line in
            (args.runs_dir / name / "metrics.jsonl").read_text().splitlines()]
    test = next(r for r in recs if r.get("event") == "test")
    end = next(r for r in recs if r.get("event") == "end")
    privacy = next((r for r in recs if r.get("event") == "privacy"), None)
    n = test["test_n"]
    return {"test_bpd": test["test_bpd"], "test_bpd_ci": 1.96 * test["test_bpd_std"] / n**0.5,
            "steps": end["step"], "train_seconds": end["elapsed"], "privacy": privacy}


def release_report_args(args: argparse.Namespace) -> list[str]:
    """Every attack; the independently trained run as the architecture-only attacker. The
    decoders are sized for a 2-core CPU (an MLP of width 512, a conv net of width 32, 1,000
    Adam steps each): the conv decoder at the defaults (width 64, 2,000 steps) took about 16
    minutes per n here."""
    return ["--independent", str(args.runs_dir / "release@seed1"), "--attack-steps",
            str(args.attack_steps), "--decoder-hidden", str(args.decoder_hidden)]


def dp_report_args(args: argparse.Namespace) -> list[str]:
    return ["--sections", "membership,synthetic", "--mia-n", str(args.mia_n)]


def small_report_args() -> list[str]:
    return ["--sections", "membership", "--mia-n", "1000"]


def report(names: list[str], args: argparse.Namespace, env: dict[str, str]) -> None:
    from _environment import machine

    if names != [*(f"eps{e}" for e in EPSILONS), "release", "release@seed1", *SMALL]:
        for name in names:  # reports of some runs only: no table
            if name.startswith("small-"):
                privacy_report(name, small_report_args(), args, env)
            elif name.startswith("eps"):
                privacy_report(name, dp_report_args(args), args, env)
            elif name == "release":
                privacy_report(name, release_report_args(args), args, env)
        return
    out: dict[str, object] = {"machine": machine(), "threads": args.threads,
                              "date": time.strftime("%Y-%m-%d"), "settings": vars(args).copy()}
    out["settings"] = {k: str(v) for k, v in vars(args).items()}
    # Every attack on the released codes, the independent run as architecture-only attacker.
    release = privacy_report("release", release_report_args(args), args, env)
    out["release"] = {**run_record("release", args), "report": release}
    shutil.copyfile(args.runs_dir / "release" / "privacy" / "privacy_report.png",
                    RESULTS / "privacy_mnist_release.png")
    dp = {}
    for eps in EPSILONS:
        name = f"eps{eps}"
        rep = privacy_report(name, dp_report_args(args), args, env)
        samples = RESULTS / f"privacy_mnist_samples_eps{eps}.png"
        subprocess.run([sys.executable, "-m", "invertible", "sample", str(args.runs_dir / name),
                        "-n", "100", "-o", str(samples), "--force"], check=True, env=env)
        dp[eps] = {**run_record(name, args), "membership": rep["membership"],
                   "synthetic": rep["synthetic"], "report_seconds": rep["seconds"]}
    out["dp"] = dp
    out["small"] = {}
    for name in SMALL:
        rep = privacy_report(name, small_report_args(), args, env)
        out["small"][name] = {**run_record(name, args), "membership": rep["membership"]}
    (RESULTS / "privacy_mnist.json").write_text(json.dumps(out, indent=1, sort_keys=True))
    (RESULTS / "privacy_mnist.md").write_text(markdown(out))
    print((RESULTS / "privacy_mnist.md").read_text())


def _pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def markdown(out: dict) -> str:
    s = out["settings"]
    rel = out["release"]
    rep = rel["report"]
    lines = [
        "# Privacy on MNIST: the encoded release under attack, and DP-SGD",
        "",
        (f"`python benchmarks/privacy_mnist.py` (see its docstring). Machine: {out['machine']};"
        f" {out['threads']} thread(s) per run, one run at a time; {out['date']}. Budgets are "
        "in steps, so the figures do not depend on the machine's load."),
        "",
        "## DP-SGD: class-conditional Glow at epsilon 1, 3, 8 and without DP",
        "",
        (f"Glow (its defaults) with the one-hot label as context and a class-conditional prior; "
        f"{s['dp_epochs']} epochs at expected batch {s['dp_batch']} (Poisson sampling, "
        f"q = {s['dp_batch']}/54,000), Adam, clip C = {s['dp_clip']}, delta = {s['dp_delta']}, "
        "RDP accountant (opacus); in the DP runs the first ActNorm starts from the accounted "
        "Gaussian-mechanism estimate of its input statistics, the others at the identity. "
        "'inf' is the same model, batch and steps trained without DP (no clipping, no noise, ActNorm initialised "
        "from data). Test bits/dim is of x given its label on the 10,000 test images (it "
        "bounds the unconditional bits/dim to within log2(10)/784 = 0.004). Membership "
        "inference: likelihood threshold on "
        f"{s['mia_n']} training members against {s['mia_n']} non-members from the validation "
        "split (held out of the same training images; the test split differs in difficulty, "
        "see `privacy/report.py`). Synthetic "
        "utility: classifiers trained on 10,000 class-balanced samples, tested on the real "
        "test set; beside them, the same classifiers on 10,000 real training images. The "
        "train wall time depends on what ran beside (up to three runs shared the 2 cores); it "
        "is not a speed figure."),
        "",
        ("| epsilon | spent | noise multiplier | steps | test bits/dim | MIA AUC | TPR at 1% FPR "
        "| logistic regression on synthetic | MLP on synthetic | train wall time |"),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    real = None
    for eps, r in out["dp"].items():
        pv = r["privacy"]
        spent = f"{pv['epsilon_spent']:.3f}" if pv else "inf"
        sigma = f"{pv['noise_multiplier']:.3f}" if pv else "0"
        m, syn = r["membership"], r["synthetic"]
        acc = syn["synthetic"]
        real = syn["real"]
        lines.append(
            f"| {eps} | {spent} | {sigma} | {r['steps']} | {r['test_bpd']:.3f} ± "
            f"{r['test_bpd_ci']:.3f} | {m['auc']:.4f} | {_pct(m['tpr_at_1pct_fpr'])} | "
            f"{_pct(acc['logistic regression'])} | {_pct(acc['MLP (256)'])} | "
            f"{r['train_seconds'] / 60:.1f} min |")
    if real is not None:
        lines += ["", (f"Trained on 10,000 real training images instead: logistic regression "
                  f"{_pct(real['logistic regression'])}, MLP {_pct(real['MLP (256)'])}."),
                  "", "Samples (row k = class k): `privacy_mnist_samples_eps{1,3,8,inf}.png`."]
    lines += [
        "",
        ("Membership inference where it can succeed: the same conditional Glow trained on 2% "
         f"of the training images (1,200; `--val-fraction 0.98`) for {s['small_steps']} steps "
         "of 64 (about 80 passes), without DP and at epsilon 8 (same steps, expected batch "
         "64); 1,000 of those members against 1,000 validation non-members."),
        "",
        ("| run | spent epsilon | test bits/dim | members' bits/dim | non-members' bits/dim | "
        "MIA AUC | TPR at 1% FPR |"),
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in out["small"].items():
        m, pv = r["membership"], r["privacy"]
        lines.append(
            f"| {name} | {pv['epsilon_spent']:.3f} | " if pv else f"| {name} | inf | ")
        lines[-1] += (f"{r['test_bpd']:.3f} | {m['member_bpd']:.3f} | {m['nonmember_bpd']:.3f} "
                      f"| {m['auc']:.4f} | {_pct(m['tpr_at_1pct_fpr'])} |")
    lines += [
        "",
        "## The encoded release under attack",
        "",
        (f"The released model: Glow (its defaults), {rel['steps']} steps, non-private, test "
        f"bits/dim {rel['test_bpd']:.3f} ± {rel['test_bpd_ci']:.3f}. Its codes z = f(x) "
        f"({rep['run']['code_dims']} dimensions) are what an analyst receives "
        "(`invertible encode RUN --data mnist -o codes.npz`). Every attack is scored on the "
        f"same {rep['targets']} held-out test images. PSNR per image (data range 1), then "
        "the mean; SSIM likewise. The architecture-only attacker also decodes with "
        "`release@seed1`, the same architecture trained independently (seed 1)."),
        "",
        "| attacker | knowledge | PSNR (dB) | SSIM |",
        "|---|---|---|---|",
    ]
    from invertible.privacy.report_output import leakage_rows

    for row in leakage_rows(rep):
        lines.append("| " + " | ".join(row) + " |")
    u = rep["utility"]
    m = rep["membership"]
    lines += [
        "",
        (f"Membership inference on the released model ({m['n']} + {m['n']}): AUC "
        f"{m['auc']:.4f}, TPR at 1% FPR {_pct(m['tpr_at_1pct_fpr'])}."),
        "",
        (f"Utility of the codes: classifiers on {u['train']} training codes against the same "
        f"classifiers on the pixels, tested on {u['test']} test images."),
        "",
        "| classifier | on codes | on pixels |",
        "|---|---|---|",
        *[f"| {c} | {_pct(u['codes'][c])} | {_pct(u['pixels'][c])} |" for c in u["codes"]],
        "",
        "Figure: `privacy_mnist_release.png` (PSNR against n; example reconstructions).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    p.add_argument("--runs-dir", type=Path, default=ROOT / "runs" / "privacy_mnist")
    p.add_argument("--stage", choices=["train", "report", "all"], default="all")
    p.add_argument("--retrain", action="store_true")
    p.add_argument("--rereport", action="store_true", help="redo reports made already")
    p.add_argument("--only", nargs="+", default=None, metavar="RUN",
                   help="train or report only these runs (the table needs them all)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--release-steps", type=int, default=3000)
    p.add_argument("--dp-epochs", type=int, default=2)
    p.add_argument("--dp-batch", type=int, default=256)
    p.add_argument("--dp-clip", type=float, default=1.0)
    p.add_argument("--dp-delta", type=float, default=1e-5)
    p.add_argument("--mia-n", type=int, default=6000, help="the validation split's size")
    p.add_argument("--small-steps", type=int, default=1500)
    p.add_argument("--attack-steps", type=int, default=1000)
    p.add_argument("--decoder-hidden", type=int, default=512)
    args = p.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1"}
    names = [*(f"eps{e}" for e in EPSILONS), "release", "release@seed1", *SMALL]
    if args.stage in ("train", "all"):
        for name in args.only or names:
            train(name, args, env)
    if args.stage in ("report", "all"):
        report(args.only or names, args, env)


if __name__ == "__main__":
    main()
