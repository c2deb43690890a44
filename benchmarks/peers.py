"""Side by side with the peer libraries: nflows, normflows, zuko and FrEIA against ours.

One command (the peers come from the optional extra: ``pip install -e ".[bench]"``):

    python benchmarks/peers.py                 # every case, about 1.5 hours on one thread
    python benchmarks/peers.py --cases layers  # one case
    python benchmarks/peers.py --smoke         # every case for a few steps (the test suite)

Every library runs every case in turn on this machine with the same data, the same
training loop (Adam, same learning rate, batches and seed), the same budget and the same
thread count (``--threads``, default 1). A library whose API cannot express a case, or that
is not installed, gets a row saying so. Cases:

- ``density``: moons, rings and checkerboard (our ``--data`` names), three architecture
  classes each (spline autoregressive, spline coupling, affine coupling), equal steps.
  Test NLL in nats per point and training wall-clock.
- ``tabular``: scikit-learn's bundled Wisconsin breast-cancer set (569 x 30, continuous),
  seeded 60/20/20 split, standardised with the training statistics. Equal steps; the test
  NLL is taken at the step of best validation NLL (early stopping, the same rule for all).
- ``images``: MNIST (``--mnist-dir``), Glow-style multi-scale model (2 levels x 4 steps,
  width 64, logit preprocessing), ``--image-budget`` seconds of training each, one at a
  time. Test bits/dim on the 10,000 test images and training images/s.
- ``layers``: affine coupling, spline coupling, invertible 1x1 convolution and our FFT
  circular convolution: forward (with its log-det) and inverse per sample at batch 256,
  measured in interleaved rounds, medians, ours as the ratio base.

Results are merged into ``benchmarks/results/peers.json`` (cases can be run separately) and
``benchmarks/results/peers.md`` is rewritten with the machine, the versions and the commands.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _environment import machine
from _peer_models import (
    LAYER_BINS,
    LAYER_DIM,
    LAYER_HIDDEN,
    LAYER_IMAGE,
    LAYER_KINDS,
    LAYER_LAYERS,
    LAYER_TAIL_BOUND,
    NOTES,
    PEERS,
    VECTOR_ARCHS,
    NotExpressible,
    PeerLayer,
    image_flow,
    layer,
    vector_flow,
    versions,
)
from torch import Tensor, nn

import invertible
from invertible import AffineCoupling, CircularConv2d, InvertibleConv1x1, SplineCoupling
from invertible.data import load_dataset
from invertible.layers.masks import half_mask
from invertible.models import build_glow, build_nsf_ar, build_nsf_coupling, build_realnvp_2d
from invertible.nets import MLP

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
LIBS = ("ours", *PEERS)
CASES = ("density", "tabular", "images", "speed", "layers")
TOYS = ("moons", "rings", "checkerboard")
# Vector flows: the same class of model for every library (see _peer_models.NOTES).
VECTOR = {"steps": 5, "hidden": 64, "layers": 2, "bins": 8, "tail_bound": 3.0}
IMAGE = {"levels": 2, "depth": 4, "hidden": 64, "alpha": 0.05}


@dataclass
class Settings:
    steps: int = 3000  # density training steps
    tabular_steps: int = 3000
    batch: int = 256
    image_batch: int = 64
    lr: float = 1e-3
    image_budget: float = 600.0
    layer_rounds: int = 15
    speed_rounds: int = 15
    seed: int = 0  # model initialisation and batch order
    data_seed: int = 0  # the data and its splits, fixed across --seed runs
    smoke: bool = False  # small data too


SMOKE = Settings(steps=3, tabular_steps=3, image_budget=3.0, layer_rounds=2, speed_rounds=1,
                 smoke=True)


# -- our models: a Flow already has the peers' interface (an nn.Module with log_prob) -------
def ours_vector(arch: str, dim: int) -> nn.Module:
    v = VECTOR
    if arch == "affine-coupling":
        return build_realnvp_2d(dim, depth=v["steps"], hidden=v["hidden"], layers=v["layers"])
    build = build_nsf_ar if arch == "spline-ar" else build_nsf_coupling
    return build(dim, depth=v["steps"], hidden=v["hidden"], layers=v["layers"],
                 bins=v["bins"], tail_bound=v["tail_bound"])


def ours_layer(kind: str, batch: int) -> PeerLayer:
    module: invertible.Bijection
    if kind in ("affine-coupling", "spline-coupling"):
        def net(i: int, o: int) -> MLP:
            return MLP(i, o, hidden=LAYER_HIDDEN, layers=LAYER_LAYERS)

        mask = half_mask(LAYER_DIM)
        if kind == "affine-coupling":
            module = AffineCoupling(mask, net)
        else:
            module = SplineCoupling(mask, net, bins=LAYER_BINS, tail_bound=LAYER_TAIL_BOUND)
        example = torch.randn(batch, LAYER_DIM)
    else:
        c = LAYER_IMAGE[0]
        module = InvertibleConv1x1(c) if kind == "conv1x1" else CircularConv2d(c, 3)
        example = torch.randn(batch, *LAYER_IMAGE)
    with torch.no_grad():  # off the identity init, so every path does real work
        for p in module.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return PeerLayer(module=module, example=example, forward=module.forward,
                     inverse=module.inverse)


def build(lib: str, case: str, **kw: Any) -> Any:
    """The model (or layer) of ``lib`` for ``case``; raises NotExpressible."""
    torch.manual_seed(kw.pop("seed", 0))
    if case == "vector":
        return ours_vector(kw["arch"], kw["dim"]) if lib == "ours" else vector_flow(
            lib, kw["arch"], kw["dim"], **VECTOR)
    if case == "image":
        if lib == "ours":
            return build_glow(kw["shape"], **IMAGE)
        return image_flow(lib, kw["shape"], **IMAGE)
    return ours_layer(kw["kind"], kw["batch"]) if lib == "ours" else layer(
        lib, kw["kind"], batch=kw["batch"])


# -- the one training loop every library goes through ---------------------------------------
def train(model: nn.Module, batches: Callable[[int], Tensor], lr: float, *, steps: int | None,
          budget: float | None, every: int = 0,
          on_eval: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Adam on the mean negative log-likelihood until ``steps`` or ``budget`` seconds.

    A step whose loss is not finite is skipped (counted); 20 in a row end the run.
    """
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    t0 = time.perf_counter()
    step = skipped = streak = seen = 0
    rates: list[float] = []
    mark, mark_seen = t0, 0
    while True:
        now = time.perf_counter()
        if (steps is not None and step >= steps) or (budget is not None and now - t0 >= budget):
            break
        x = batches(step)
        loss = -model.log_prob(x).mean()
        if not torch.isfinite(loss):
            skipped, streak = skipped + 1, streak + 1
            if streak >= 20:
                break
            step += 1
            continue
        streak = 0
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        seen += len(x)
        if now - mark >= 10:
            rates.append((seen - mark_seen) / (now - mark))
            mark, mark_seen = now, seen
        if every and on_eval is not None and step % every == 0:
            on_eval(step)
            model.train()
    wall = time.perf_counter() - t0
    rate = statistics.median(rates) if rates else seen / max(wall, 1e-9)
    return {"steps": step, "skipped": skipped, "diverged": streak >= 20, "train_s": wall,
            "images_per_s": rate}


@torch.no_grad()
def mean_nll(model: nn.Module, x: Tensor, batch: int = 1000) -> tuple[float, float]:
    """Mean and standard error of ``-log p`` over ``x`` (nats); inf where not finite."""
    model.eval()
    nll = torch.cat([-model.log_prob(x[i : i + batch]).double() for i in range(0, len(x), batch)])
    if not torch.isfinite(nll).all():
        return math.inf, math.nan
    return nll.mean().item(), (nll.std() / math.sqrt(len(nll))).item()


def batch_sampler(data: Tensor, size: int, seed: int) -> Callable[[int], Tensor]:
    """The same sequence of batches for every library (shuffled epochs)."""
    g = torch.Generator().manual_seed(seed)
    order: list[Tensor] = []

    def get(step: int) -> Tensor:
        if not order or len(order[0]) < size:
            order[:] = [torch.randperm(len(data), generator=g)]
        idx, order[0] = order[0][:size], order[0][size:]
        return data[idx]

    return get


# -- cases ---------------------------------------------------------------------------------
def _row(lib: str, seed: int = 0, **fields: Any) -> dict[str, Any]:
    return {"lib": lib, "seed": seed, **fields}


def case_density(libs: list[str], s: Settings, toys: list[str]) -> list[dict[str, Any]]:
    rows = []
    for toy in toys:
        n_train, n_test = (512, 256) if s.smoke else (20_000, 10_000)
        train_x = load_dataset(toy, split="train", n_samples=n_train, seed=s.data_seed).data
        test_x = load_dataset(toy, split="test", n_samples=n_test, seed=s.data_seed).data
        for arch in VECTOR_ARCHS:
            for lib in libs:
                key = {"case": "density", "data": toy, "arch": arch}
                try:
                    model = build(lib, "vector", arch=arch, dim=2, seed=s.seed)
                except NotExpressible as e:
                    rows.append(_row(lib, s.seed, **key, missing=str(e)))
                    continue
                run = train(model, batch_sampler(train_x, s.batch, s.seed), s.lr,
                            steps=s.steps, budget=None)
                nll, se = mean_nll(model, test_x)
                rows.append(_row(lib, s.seed, **key, nll=nll, se=se, **run, params=_params(model)))
                print(json.dumps(rows[-1]), flush=True)
    return rows


def tabular_split(seed: int) -> dict[str, Tensor]:
    from sklearn.datasets import load_breast_cancer

    x = load_breast_cancer().data.astype(np.float32)
    idx = np.random.default_rng(seed).permutation(len(x))
    n_tr, n_va = int(0.6 * len(x)), int(0.2 * len(x))
    parts = {"train": idx[:n_tr], "val": idx[n_tr : n_tr + n_va], "test": idx[n_tr + n_va :]}
    mean, std = x[parts["train"]].mean(0), x[parts["train"]].std(0)
    return {k: torch.from_numpy((x[v] - mean) / std) for k, v in parts.items()}


def case_tabular(libs: list[str], s: Settings) -> list[dict[str, Any]]:
    data = tabular_split(s.data_seed)
    dim = data["train"].shape[1]
    rows = []
    for arch in VECTOR_ARCHS:
        for lib in libs:
            key = {"case": "tabular", "data": "breast-cancer", "arch": arch}
            try:
                model = build(lib, "vector", arch=arch, dim=dim, seed=s.seed)
            except NotExpressible as e:
                rows.append(_row(lib, s.seed, **key, missing=str(e)))
                continue
            best: dict[str, Any] = {"val": math.inf, "test": math.inf, "se": math.nan, "step": 0}

            def evaluate(step: int, model: nn.Module = model,
                         best: dict[str, Any] = best) -> None:
                val, _ = mean_nll(model, data["val"])
                if val < best["val"]:
                    test, se = mean_nll(model, data["test"])
                    best.update(val=val, test=test, se=se, step=step)

            run = train(model, batch_sampler(data["train"], 64, s.seed), s.lr,
                        steps=s.tabular_steps, budget=None, every=max(1, s.tabular_steps // 60),
                        on_eval=evaluate)
            rows.append(_row(lib, s.seed, **key, nll=best["test"], se=best["se"], val_nll=best["val"],
                             best_step=best["step"], **run, params=_params(model)))
            print(json.dumps(rows[-1]), flush=True)
    return rows


def case_images(libs: list[str], s: Settings, mnist: Path) -> list[dict[str, Any]]:
    if not (mnist / "train-images-idx3-ubyte.gz").exists():
        print(f"images: skipped, MNIST not found in {mnist}", flush=True)
        return []
    train_set = load_dataset("mnist", mnist, "train", seed=s.data_seed)
    test_set = load_dataset("mnist", mnist, "test")
    n_test = 256 if s.smoke else len(test_set)
    g = torch.Generator().manual_seed(s.seed + 1)
    # One fixed dequantization of the test set, shared by every library.
    test_x = (test_set.images[:n_test].float() + torch.rand(n_test, 1, 28, 28, generator=g)) / 256
    train_levels = train_set.images
    noise = torch.Generator().manual_seed(s.seed + 2)
    pick = batch_sampler(torch.arange(len(train_levels)), s.image_batch, s.seed)

    def batches(step: int) -> Tensor:
        k = train_levels[pick(step)].float()
        return (k + torch.rand(k.shape, generator=noise)) / 256

    rows = []
    dims = 28 * 28
    for lib in libs:
        key = {"case": "images", "data": "mnist", "arch": "glow"}
        try:
            model = build(lib, "image", shape=(1, 28, 28), seed=s.seed)
        except NotExpressible as e:
            rows.append(_row(lib, s.seed, **key, missing=str(e)))
            continue
        run = train(model, batches, s.lr, steps=None, budget=s.image_budget)
        nll, se = mean_nll(model, test_x, batch=500)
        # Density of levels: p(x) on [0, 1]^D times the bin width 1/256 per dimension.
        bpd = (nll + dims * math.log(256)) / (dims * math.log(2))
        rows.append(_row(lib, s.seed, **key, bpd=bpd, bpd_se=se / (dims * math.log(2)), **run,
                         params=_params(model)))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _seconds(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def case_speed(libs: list[str], s: Settings) -> list[dict[str, Any]]:
    """MNIST Glow training steps of every library interleaved round by round, so that the
    machine's load drifts hit all alike: the side-by-side images/s the budget runs lack."""
    models: dict[str, nn.Module] = {}
    rows = []
    for lib in libs:
        try:
            models[lib] = build(lib, "image", shape=(1, 28, 28), seed=s.seed)
        except NotExpressible as e:
            rows.append(_row(lib, s.seed, case="speed", arch="glow", missing=str(e)))
    g = torch.Generator().manual_seed(s.seed)
    x = torch.rand(s.image_batch, 1, 28, 28, generator=g)
    opts = {lib: torch.optim.Adam(m.parameters(), lr=s.lr) for lib, m in models.items()}

    def step(lib: str) -> None:
        loss = -models[lib].log_prob(x).mean()
        opts[lib].zero_grad(set_to_none=True)
        loss.backward()
        opts[lib].step()

    times: dict[str, list[float]] = {lib: [] for lib in models}
    for lib, m in models.items():  # data-dependent init and warm-up, untimed
        m.train()
        step(lib)
        step(lib)
    for _ in range(s.speed_rounds):
        for lib in models:
            times[lib].append(_seconds(lambda lib=lib: [step(lib) for _ in range(3)]) / 3)
    for lib in models:
        per_step = statistics.median(times[lib])
        rows.append(_row(lib, s.seed, case="speed", arch="glow", step_ms=1e3 * per_step,
                         images_per_s=s.image_batch / per_step, rounds=s.speed_rounds))
    print(json.dumps(rows), flush=True)
    return rows


@torch.no_grad()
def case_layers(libs: list[str], s: Settings, batch: int = 256) -> list[dict[str, Any]]:
    rows = []
    for kind in LAYER_KINDS:
        built: dict[str, PeerLayer] = {}
        for lib in libs:
            try:
                built[lib] = build(lib, "layer", kind=kind, batch=batch, seed=s.seed)
            except NotExpressible as e:
                rows.append(_row(lib, s.seed, case="layers", arch=kind, missing=str(e)))
        times: dict[str, dict[str, list[float]]] = {lib: {"fwd": [], "inv": []} for lib in built}
        error: dict[str, float] = {}
        for lib, lay in built.items():  # warm-up, and the round trip as a sanity check
            lay.module.eval()
            y, _ = lay.forward(lay.example)
            x, _ = lay.inverse(y)
            error[lib] = (x - lay.example).abs().max().item()
        for _ in range(s.layer_rounds):  # interleaved, so drifts in machine load hit all
            for lib, lay in built.items():
                y = lay.forward(lay.example)[0]
                times[lib]["fwd"].append(_seconds(lambda lay=lay: lay.forward(lay.example)))
                times[lib]["inv"].append(_seconds(lambda lay=lay, y=y: lay.inverse(y)))
        for lib, lay in built.items():
            fwd = statistics.median(times[lib]["fwd"]) / batch * 1e6
            inv = statistics.median(times[lib]["inv"]) / batch * 1e6
            rows.append(_row(lib, s.seed, case="layers", arch=kind, fwd_us=fwd, inv_us=inv,
                             round_trip=error[lib], params=_params(lay.module)))
        print(json.dumps([r for r in rows if r.get("arch") == kind]), flush=True)
    return rows


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# -- the results table ---------------------------------------------------------------------
def _fmt(row: dict[str, Any], field: str, spec: str) -> str:
    v = row.get(field)
    if v is None:
        return "-"
    if isinstance(v, float) and not math.isfinite(v):
        return "diverged"
    return format(v, spec)


def _note(row: dict[str, Any]) -> str:
    bits = []
    if row.get("skipped"):
        bits.append(f"{row['skipped']} non-finite steps skipped")
    if row.get("diverged"):
        bits.append("stopped: 20 non-finite steps in a row")
    return "; ".join(bits)


def _order(row: dict[str, Any]) -> tuple[int, int, int]:
    data = TOYS.index(row["data"]) if row.get("data") in TOYS else 0
    kinds = (*VECTOR_ARCHS, *LAYER_KINDS)
    arch = kinds.index(row["arch"]) if row.get("arch") in kinds else 0
    return data, arch, LIBS.index(row["lib"])


def _seed_spread(rows: list[dict[str, Any]]) -> list[str]:
    """A line per cell run with more than one seed: its NLL per seed, mean and range."""
    cells: dict[tuple[Any, ...], dict[int, float]] = {}
    for r in rows:
        if "nll" in r:
            cells.setdefault(_key(r)[:4], {})[r.get("seed", 0)] = r["nll"]
    lines = []
    for (case, data, arch, lib), by_seed in sorted(
        cells.items(), key=lambda kv: (kv[0][0], _order({"data": kv[0][1], "arch": kv[0][2],
                                                         "lib": kv[0][3]}))
    ):
        if len(by_seed) < 2:
            continue
        values = [by_seed[k] for k in sorted(by_seed)]
        lines.append(f"| {case} | {data} | {arch} | {lib} | "
                     f"{', '.join(f'{v:.3f}' for v in values)} | "
                     f"{statistics.mean(values):.3f} | {max(values) - min(values):.3f} |")
    return lines


def write_table(store: dict[str, Any], path: Path) -> None:
    every_seed: list[dict[str, Any]] = store["rows"]
    rows = [r for r in every_seed if r.get("seed", 0) == 0]
    meta = store["meta"]
    lines = ["# Side by side with the peer libraries", "",
             f"Machine: {meta['machine']}. Date: {meta['date']}.", "",
             "Versions: " + ", ".join(f"{k} {v or 'not installed'}"
                                      for k, v in meta["versions"].items()) + ".", "",
             "Commands (each case was run with its own command; the table merges them):", ""]
    lines += [f"    {c}" for c in meta["commands"]]
    lines += ["", "Settings: " + json.dumps(meta["settings"]) + ".", ""]
    notes = meta.get("notes", {})

    def missing(r: dict[str, Any]) -> str:
        return f"cannot: {r['missing']}"

    def section(case: str, title: str, head: str, cells: Callable[[dict[str, Any]], str]) -> None:
        sel = sorted((r for r in rows if r["case"] == case), key=_order)
        if not sel:
            return
        lines.extend([f"## {title}", "", head, "|" + "---|" * (head.count("|") - 1)])
        for r in sel:
            lines.append(cells(r))
        lines.append("")

    def vec(r: dict[str, Any]) -> str:
        if "missing" in r:
            return f"| {r['data']} | {r['arch']} | {r['lib']} | {missing(r)} | | | |"
        return (f"| {r['data']} | {r['arch']} | {r['lib']} | {_fmt(r, 'nll', '.3f')} ± "
                f"{_fmt(r, 'se', '.3f')} | {_fmt(r, 'train_s', '.0f')} | {r['params']:,} | "
                f"{_note(r)} |")

    head = "| data | architecture | library | test NLL (nats) | train s | params | note |"
    section("density", "2-D densities (equal steps)", head, vec)
    section("tabular", "Tabular: breast cancer, 30-D (equal steps, early stopping)", head, vec)

    def img(r: dict[str, Any]) -> str:
        if "missing" in r:
            return f"| {r['lib']} | {missing(r)} | | | | |"
        return (f"| {r['lib']} | {_fmt(r, 'bpd', '.3f')} ± {_fmt(r, 'bpd_se', '.3f')} | "
                f"{_fmt(r, 'images_per_s', '.0f')} | {r['steps']:,} | {r['params']:,} | "
                f"{_note(r)} |")

    section("images", "MNIST, Glow-style, equal wall-clock", "| library | test bits/dim | "
            "train images/s | steps | params | note |", img)

    fastest_peer = max((r["images_per_s"] for r in rows if r["case"] == "speed"
                        and r["lib"] != "ours" and "missing" not in r), default=None)

    def speed(r: dict[str, Any]) -> str:
        if "missing" in r:
            return f"| {r['lib']} | {missing(r)} | | |"
        ratio = "-" if fastest_peer is None else f"{r['images_per_s'] / fastest_peer:.2f}x"
        return f"| {r['lib']} | {r['step_ms']:.0f} | {r['images_per_s']:.0f} | {ratio} |"

    section("speed", "MNIST Glow training speed, side by side (interleaved rounds, medians)",
            "| library | ms per step (batch 64) | images/s | vs fastest peer |", speed)

    base = {(r["arch"]): r for r in rows if r["case"] == "layers" and r["lib"] == "ours"
            and "missing" not in r}

    def lay(r: dict[str, Any]) -> str:
        if "missing" in r:
            return f"| {r['arch']} | {r['lib']} | {missing(r)} | | | | |"
        b = base.get(r["arch"])
        ratio = (lambda f: f"{r[f] / b[f]:.2f}x" if b else "-")
        return (f"| {r['arch']} | {r['lib']} | {r['fwd_us']:.2f} | {ratio('fwd_us')} | "
                f"{r['inv_us']:.2f} | {ratio('inv_us')} | {r['round_trip']:.1e} |")

    section("layers", "Layer throughput, batch 256 (microseconds per sample, medians; "
            "ratio = library time / ours, so above 1 means slower than ours)",
            "| layer | library | forward+log-det us | vs ours | inverse us | vs ours | "
            "round trip |", lay)
    spread = _seed_spread(every_seed)
    if spread:
        lines += ["## Seed spread (same data, other initialisations and batch orders)", "",
                  ("| case | data | architecture | library | test NLL per seed (0, 1, ...) | "
                   "mean | max - min |"), "|---|---|---|---|---|---|---|"]
        lines += spread
        lines.append("")
    if notes:
        lines += ["## How each peer model was built", ""]
        lines += [f"- {k}: {v}" for k, v in sorted(notes.items())]
        lines.append("")
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)


def _key(r: dict[str, Any]) -> tuple[Any, ...]:
    return r["case"], r.get("data"), r.get("arch"), r["lib"], r.get("seed", 0)


def merge(store_path: Path, rows: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    """Replace the stored rows of the cells just run (same case, data, model, library and
    seed), keep the others."""
    old = json.loads(store_path.read_text()) if store_path.exists() else {"rows": [], "meta": {}}
    ran = {_key(r) for r in rows}
    kept = [r for r in old["rows"] if _key(r) not in ran]
    commands = [c for c in old["meta"].get("commands", []) if c != meta["command"]]
    merged_meta = {**old["meta"], **meta, "commands": [*commands, meta["command"]]}
    store = {"rows": kept + rows, "meta": merged_meta}
    tmp = store_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(store, indent=1))
    os.replace(tmp, store_path)
    return store


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    p.add_argument("--libs", nargs="+", choices=LIBS, default=list(LIBS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0,
                   help="model initialisation and batch order (the data stay fixed); the table "
                   "shows seed 0, other seeds go to a seed-spread section")
    p.add_argument("--toys", nargs="+", choices=TOYS, default=list(TOYS))
    p.add_argument("--steps", type=int, default=Settings.steps)
    p.add_argument("--image-budget", type=float, default=Settings.image_budget,
                   help="seconds of MNIST training per library")
    p.add_argument("--mnist-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    p.add_argument("--smoke", action="store_true",
                   help="a few steps of every case; writes under --out-dir, not results/")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    s = SMOKE if a.smoke else Settings(steps=a.steps, image_budget=a.image_budget)
    s = dataclasses.replace(s, seed=a.seed)
    have = versions()
    libs = []
    for lib in a.libs:
        if lib != "ours" and have.get(lib) is None:
            print(f"{lib}: not installed, skipped (pip install -e \".[bench]\")", flush=True)
        else:
            libs.append(lib)
    rows: list[dict[str, Any]] = []
    for case in a.cases:
        if case == "density":
            rows += case_density(libs, s, a.toys)
        elif case == "tabular":
            rows += case_tabular(libs, s)
        elif case == "images":
            rows += case_images(libs, s, a.mnist_dir)
        elif case == "speed":
            rows += case_speed(libs, s)
        else:
            rows += case_layers(libs, s)
    meta = {"machine": machine(), "date": time.strftime("%Y-%m-%d"),
            "versions": {"ours": invertible.__version__, "torch": torch.__version__, **have},
            # The seed is per row (see the seed-spread section), not a setting of the table.
            "settings": {**{k: v for k, v in s.__dict__.items() if k != "seed"},
                         "vector": VECTOR, "image": IMAGE},
            "command": " ".join(["python benchmarks/peers.py", *(argv or sys.argv[1:])]),
            "notes": {f"{lib} {arch}": text for (lib, arch), text in NOTES.items()}}
    a.out_dir.mkdir(parents=True, exist_ok=True)
    store = merge(a.out_dir / "peers.json", rows, meta)
    write_table(store, a.out_dir / "peers.md")
    print(f"wrote {a.out_dir / 'peers.md'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
