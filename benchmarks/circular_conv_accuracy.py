"""Inverse accuracy of CircularConv2d against its condition number; cost of the controls.

One command: ``python benchmarks/circular_conv_accuracy.py`` (``--quick`` for a smoke run).
Writes ``benchmarks/results/circular_conv_accuracy.md``:

1. random kernels (c = 16, 16 x 16, B = 8) whose condition number is swept from 1 to ~1e7
   by scaling the output channels of a random kernel geometrically; the relative error
   ``|inverse(forward(x)) - x| / |x|`` for float32 (complex LU, real-lifted LU, explicit
   inverses) and float64, next to the first-order bound ``cond * eps``;
2. trained kernels: the pure i-ConvNet trained on sklearn's 8x8 digits with no control,
   with the barrier penalty, and with singular-value clipping after every step: test
   bits/dim, the worst condition number, whole-flow round-trip error, and the time per
   training step relative to no control (medians, interleaved);
3. the one-off cost of the conditioning guard (an SVD per frequency) against the LU
   factorisation and a cached inverse at c = 64, 32 x 32, B = 32.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from sklearn.datasets import load_digits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _circular_conv_common import describe_machine, interleaved_medians, write_atomic

from invertible import CircularConv2d
from invertible.models.iconvnet import build_iconvnet

EPS32 = torch.finfo(torch.float32).eps
EPS64 = torch.finfo(torch.float64).eps


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def _random_kernel(c: int, k: int, exponent: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = 0.3 * torch.randn(c, c, k, k, generator=g, dtype=torch.float64) / (c * k * k) ** 0.5
    w[:, :, k // 2, k // 2] += torch.eye(c, dtype=torch.float64)
    scales = torch.logspace(0, -exponent, c, dtype=torch.float64)
    return w * scales.view(-1, 1, 1, 1)


def _round_trip(weight: torch.Tensor, dtype, h: int, w: int, **kw) -> tuple[float, float]:
    c, k = weight.shape[0], weight.shape[-1]
    m = CircularConv2d(c, k, tolerance=None, **kw).to(dtype).requires_grad_(False)
    with torch.no_grad():
        m.weight.copy_(weight.to(dtype))
        m.bias.copy_(0.1 * torch.randn(c, dtype=dtype))
        x = torch.randn(8, c, h, w, dtype=torch.float64).to(dtype)
        z, _ = m(x)
        x2, _ = m.inverse(z)
    return m.condition_number(h, w), _rel(x2, x)


def random_kernel_table(quick: bool) -> list[str]:
    c, k, h, w = 16, 3, 16, 16
    exponents = [0, 2, 4, 6] if quick else [0, 1, 2, 3, 4, 5, 6, 7]
    rows = [
        (
            "| cond | f32 complex LU | f32 real-lifted LU | f32 explicit inverse (default) | "
            "f32 bound cond*eps | f64 complex LU | f64 bound |"
        ),
        "|" + "---|" * 7,
    ]
    for i, e in enumerate(exponents):
        wt = _random_kernel(c, k, e, seed=i)
        cond, e64 = _round_trip(wt, torch.float64, h, w, solver="lu")
        _, e32 = _round_trip(wt, torch.float32, h, w, solver="lu")
        _, e32r = _round_trip(wt, torch.float32, h, w, linalg="real", solver="lu")
        _, e32i = _round_trip(wt, torch.float32, h, w, solver="inverse")
        rows.append(
            f"| {cond:.2e} | {e32:.1e} | {e32r:.1e} | {e32i:.1e} | {cond * EPS32:.1e} | "
            f"{e64:.1e} | {cond * EPS64:.1e} |"
        )
    return rows


def _digits():
    images = torch.tensor(load_digits().images, dtype=torch.float32).unsqueeze(1)
    return images[:1400], images[1400:]


def _deq(k: torch.Tensor) -> torch.Tensor:
    return (k + torch.rand_like(k)) / 17


def trained_table(steps: int, lr: float, penalty_weight: float) -> list[str]:
    train, test = _digits()
    results = {}
    step_fns = {}
    flows = {}
    for control in ("none", "penalty", "clip"):
        torch.manual_seed(0)
        flow = build_iconvnet((1, 8, 8))
        flow.train()
        with torch.no_grad():
            flow.log_prob(_deq(train[:256]))
        opt = torch.optim.Adam(flow.parameters(), lr=lr)
        net = flow.bijection

        def step(flow=flow, opt=opt, net=net, control=control):
            idx = torch.randint(0, len(train), (64,))
            loss = flow.bits_per_dim(_deq(train[idx]), 17).mean()
            if control == "penalty":
                loss = loss + penalty_weight * net.conditioning_penalty()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if control == "clip":
                net.clip_singular_values_()

        flows[control], step_fns[control] = flow, step
    # Train the three side by side, timing every step, so that noise is shared.
    times: dict[str, list[float]] = {k: [] for k in step_fns}
    for _ in range(steps):
        for k, f in step_fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    base = statistics.median(times["none"])
    for control, flow in flows.items():
        flow.eval()
        torch.manual_seed(1)
        x = _deq(test)
        with torch.no_grad():
            bpd = flow.bits_per_dim(x, 17).mean().item()
            z, _ = flow.bijection(x)
            x2, _ = flow.bijection.inverse(z)
            conv_errs = []
            for m in flow.bijection.convolutions():
                h, w = m._last_hw
                xin = torch.randn(16, m.channels, h, w)
                zc, _ = m(xin)
                conv_errs.append(_rel(m.inverse(zc)[0], xin))
        conds = flow.bijection.condition_numbers()
        results[control] = (
            bpd,
            max(conds),
            statistics.median(conds),
            max(conv_errs),
            _rel(x2, x),
            statistics.median(times[control]) / base,
        )
    rows = [
        (
            "| control | test bits/dim | max cond | median cond | worst conv round trip | "
            "flow round trip | time per step / none |"
        ),
        "|" + "---|" * 7,
    ]
    for control, (bpd, cmax, cmed, cerr, ferr, tr) in results.items():
        rows.append(
            f"| {control} | {bpd:.3f} | {cmax:.2f} | {cmed:.2f} | {cerr:.1e} | "
            f"{ferr:.1e} | {tr:.2f} |"
        )
    return rows


def guard_cost(repeats: int) -> list[str]:
    c, h, w = 64, 32, 32
    # One identical layer per role: clearing or clipping a shared layer would make the
    # "cached" inverse refactorise on every round (as an earlier version of this did).
    def layer() -> CircularConv2d:
        torch.manual_seed(0)
        return CircularConv2d(c, 3).requires_grad_(False)

    m, cold, clipped = layer(), layer(), layer()
    z = torch.randn(32, c, h, w)
    with torch.no_grad():
        m.inverse(z)

    def fresh(fn):
        def run():
            cold.clear_cache()
            fn()

        return run

    with torch.no_grad():
        t = interleaved_medians(
            {
                "inverse (cached, default solver)": lambda: m.inverse(z),
                "LU factorisation": fresh(lambda: cold._factors(h, w)),
                "guard (SVD)": fresh(lambda: cold.condition_number(h, w)),
                "clip_singular_values_": lambda: clipped.clip_singular_values_(h, w),
            },
            repeats,
        )
    base = t["inverse (cached, default solver)"]
    rows = ["| operation (c = 64, 32 x 32, B = 32) | time / cached inverse |", "|---|---|"]
    rows += [f"| {k} | {v / base:.2f} |" for k, v in t.items()]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--penalty-weight", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "circular_conv_accuracy.md",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    steps = 20 if args.quick else args.steps
    repeats = 3 if args.quick else args.repeats
    machine = describe_machine()
    print("random kernels", flush=True)
    rand_rows = random_kernel_table(args.quick)
    print("trained kernels", flush=True)
    trained_rows = trained_table(steps, args.lr, args.penalty_weight)
    print("guard cost", flush=True)
    guard_rows = guard_cost(repeats)
    lines = [
        "# CircularConv2d inverse accuracy and conditioning control",
        "",
        f"Machine: {machine}.",
        (
            f"Command: `python benchmarks/circular_conv_accuracy.py` (threads={args.threads}, "
            f"steps={steps}, lr={args.lr}, penalty weight={args.penalty_weight})."
        ),
        "",
        "## Random kernels (c = 16, k = 3, 16 x 16, B = 8)",
        "",
        "Relative error of `inverse(forward(x))`; the bound is the first-order `cond * eps`.",
        "",
        *rand_rows,
        "",
        f"## Trained kernels: pure i-ConvNet on 8x8 digits, {steps} Adam steps",
        "",
        (
            "Default model (`build_iconvnet((1, 8, 8))`, float32). Controls: `penalty` adds "
            f"{args.penalty_weight} x `conditioning_penalty()` (barrier outside the singular-value "
            "bounds (0.05, 20)) to the loss; `clip` calls `clip_singular_values_()` after every "
            "step. Step times are medians over all steps, the three runs interleaved."
        ),
        "",
        *trained_rows,
        "",
        "## One-off costs of the guard and the clipping",
        "",
        (
            "Medians of interleaved repeats. The guard runs once per weight value and image size "
            "(cached with the factors), before the first inverse."
        ),
        "",
        *guard_rows,
        "",
    ]
    write_atomic(args.out, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
