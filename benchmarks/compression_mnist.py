"""Lossless compression of the MNIST test set: our integer-flow codec against classical codecs.

    # the model (hours are fine; the committed results say which budget was used):
    invertible train --task codec --data mnist --data-dir ../shared/data/mnist \\
        --depth 4 --hidden 64 --lr 1e-3 --max-time 4300 --out runs/idf
    # the benchmark:
    python benchmarks/compression_mnist.py --run runs/idf --data-dir ../shared/data/mnist

Every row's pixels are decoded and compared with the originals (``exact``): nothing is
assumed. Ours is measured twice: the whole set as one stream (chunks of 256 images), and one
stream per image (what ``invertible compress RUN digit.png -o digit.inv`` writes for each of
10,000 PNGs, header and checksum included). Beside them: the model's own cross-entropy on the
same images (the size an ideal coder would reach), so the coder's overhead is the difference.

Writes ``benchmarks/results/compression_mnist.{md,json}``. One intra-op thread throughout.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _classical_codecs import classical_rows
from _environment import machine

RESULTS = Path(__file__).resolve().parent / "results"


def _ours(run_dir: str, images: np.ndarray, per_image_n: int) -> tuple[list[dict], dict]:
    from invertible.codec.compressor import Compressor
    from invertible.codec.images import SourceImages
    from invertible.privacy.release import model_id
    from invertible.training.run import open_run

    run = open_run(run_dir, "best", torch.device("cpu"))
    flow = run.objective.flow.eval()
    comp = Compressor(flow, bytes.fromhex(model_id(run.objective, run.config, run.data)))
    n = len(images)
    with torch.no_grad():
        x = torch.from_numpy(images[:, None].astype(np.int64))
        nats = sum(float(-flow.log_prob(x[i : i + 500]).sum()) for i in range(0, n, 500))
    cross_entropy = nats / math.log(2) / images.size

    rows = []
    t0 = time.perf_counter()
    data = comp.compress(SourceImages(images, "idx", {}))
    t1 = time.perf_counter()
    back = comp.decompress(data).pixels
    t2 = time.perf_counter()
    same = int((back == images).reshape(n, -1).all(1).sum())
    rows.append({"codec": "invertible IDF (ours)", "mode": "whole set", "bytes": len(data),
                 "bpd": 8 * len(data) / images.size, "encode_img_s": n / (t1 - t0),
                 "decode_img_s": n / (t2 - t1), "exact": same == n, "n": n, "exact_count": same})

    m = min(per_image_n, n)
    sizes, exact, enc, dec = [], 0, 0.0, 0.0
    for i in range(m):
        one = SourceImages(images[i : i + 1], "png", {})
        t0 = time.perf_counter()
        blob = comp.compress(one)
        t1 = time.perf_counter()
        out = comp.decompress(blob).pixels
        dec += time.perf_counter() - t1
        enc += t1 - t0
        sizes.append(len(blob))
        exact += int(np.array_equal(out, images[i : i + 1]))
    total = sum(sizes)
    rows.append({"codec": "invertible IDF (ours)", "mode": "per image", "bytes": total,
                 "bpd": 8 * total / (m * images[0].size), "encode_img_s": m / enc,
                 "decode_img_s": m / dec, "exact": exact == m, "n": m,
                 "exact_count": exact})
    header = len(comp.compress(SourceImages(images[:1], "png", {}))) - _payload_bytes(comp,
                                                                                        images[:1])
    info = {"cross_entropy_bpd": cross_entropy, "per_image_framing_bytes": header,
            "model_id": comp.model_id[:8].hex(),
            "parameters": sum(p.numel() for p in flow.parameters()),
            "model_options": run.config.model_options}
    return rows, info


def _payload_bytes(comp: Any, px: np.ndarray) -> int:
    from invertible.codec.coder import encode_images

    return 4 * len(encode_images(comp.flow, torch.from_numpy(px[:, None].astype(np.int64))))


def _training_budget(run_dir: str) -> dict[str, Any]:
    """The run's budget as its metrics log recorded it (read when the report is written, so
    a benchmark started before training ended still reports the whole run)."""
    from invertible.training.metrics import read_metrics
    from invertible.training.run import read_run_config

    paths, cfg, _ = read_run_config(run_dir)
    records = read_metrics(paths.metrics)
    end = [r for r in records if r.get("event") == "end"]
    steps = [r for r in records if "epoch" in r and "step" in r]
    return {"seconds": end[-1]["elapsed"] if end else None,
            "steps": end[-1]["step"] if end else None,
            "epochs": steps[-1]["epoch"] if steps else None, "batch_size": cfg.batch_size,
            "lr": cfg.lr, "ema": cfg.ema, "max_time": cfg.max_time}


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _table(rows: list[dict]) -> list[str]:
    lines = ["| codec | mode | images | bytes | bits/dim | encode img/s | decode img/s | exact |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['codec']} | {r['mode']} | {r.get('n', '')} | "
                     f"{_fmt(r['bytes'], ',')} | {_fmt(r['bpd'], '.4f')} | "
                     f"{_fmt(r['encode_img_s'], ',.0f')} | {_fmt(r['decode_img_s'], ',.0f')} | "
                     f"{'yes' if r['exact'] else 'NO'} |")
    return lines


def _goals(rows: list[dict], info: dict) -> list[str]:
    ours = {r["mode"]: r for r in rows if r["codec"].startswith("invertible")}
    classical = [r for r in rows if not r["codec"].startswith("invertible") and r["bytes"]]
    best_set = min((r for r in classical if r["mode"] == "whole set"), key=lambda r: r["bpd"])
    best_one = min((r for r in classical if r["mode"] == "per image"), key=lambda r: r["bpd"])
    ce = info["cross_entropy_bpd"]
    stream, single = ours["whole set"], ours["per image"]
    over = stream["bpd"] / ce - 1
    vs_one = 1 - single["bpd"] / best_one["bpd"]
    vs_set = 1 - stream["bpd"] / best_set["bpd"]

    def mark(ok: bool) -> str:
        return "met" if ok else "missed"

    return [
        (f"- Stream within 1% of the model's cross-entropy ({ce:.4f} bits/dim): "
        f"{stream['bpd']:.4f}, {100 * over:+.2f}% -> {mark(over <= 0.01)}."),
        (f"- One image per file at least 30% smaller than the best per-image classical codec "
        f"({best_one['codec']}, {best_one['bpd']:.4f}): {single['bpd']:.4f}, "
        f"{100 * vs_one:.1f}% smaller -> {mark(vs_one >= 0.30)}."),
        (f"- Whole set smaller than the best classical codec on the whole set "
        f"({best_set['codec']}, {best_set['bpd']:.4f}): {stream['bpd']:.4f}, "
        f"{100 * vs_set:+.1f}% -> {mark(vs_set > 0)} (stretch 15%: {mark(vs_set >= 0.15)})."),
        (f"- Exact: whole set {stream['exact_count']}/{stream['n']}, "
        f"per image {single['exact_count']}/{single['n']}, verified by decoding."),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", help="a run folder of 'train --task codec' (stages ours, all)")
    p.add_argument("--data-dir", default="../shared/data/mnist")
    p.add_argument("--n", type=int, default=10000, help="test images (default all 10,000)")
    p.add_argument("--per-image-n", type=int, default=10000,
                   help="images coded one file each (default all)")
    p.add_argument("--stage", choices=["all", "classical", "ours", "report"], default="all",
                   help="classical and ours each cache their rows beside --out (two "
                   "processes can run them at once); report writes the tables from the caches")
    p.add_argument("--out", default=str(RESULTS / "compression_mnist"), help="results stem")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    from invertible.data.idx import IMAGE_MAGIC, read_idx

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    gz = Path(args.data_dir) / "t10k-images-idx3-ubyte.gz"
    images = np.ascontiguousarray(read_idx(gz, IMAGE_MAGIC)[: args.n])
    cache = {k: out.with_name(f"{out.name}_{k}.json") for k in ("classical", "ours")}
    if args.stage in ("all", "classical"):
        rows = classical_rows(images, gz)
        for r in rows:
            r.setdefault("n", len(images))
        cache["classical"].write_text(json.dumps(rows, indent=2))
    if args.stage in ("all", "ours"):
        if not args.run:
            p.error("--run is needed for the stage 'ours'")
        rows, info = _ours(args.run, images, args.per_image_n)
        cache["ours"].write_text(json.dumps({"rows": rows, "info": info, "run": args.run},
                                            indent=2))
    if args.stage in ("all", "report"):
        ours = json.loads(cache["ours"].read_text())
        rows = ours["rows"] + json.loads(cache["classical"].read_text())
        info = {**ours["info"], "train": _training_budget(ours["run"])}
        _report(rows, info, ours["run"], args, out)
    return 0


def _report(rows: list[dict], info: dict, run: str, args: argparse.Namespace,
            out: Path) -> None:
    ours_set = rows[0]
    lines = [
        "# Lossless compression of the MNIST test set",
        "",
        f"Machine: {machine()}; torch.get_num_threads() = {torch.get_num_threads()}.",
        (f"Command: `python benchmarks/compression_mnist.py --run {run} --n {args.n} "
         f"--per-image-n {args.per_image_n}`."),
        "",
        (f"Model: integer discrete flow, {info['parameters']:,} parameters, options "
         f"{info['model_options']}, id {info['model_id']}. Training: "
         f"{json.dumps(info['train'])}."),
        "",
        (f"The model's cross-entropy on these images: **{info['cross_entropy_bpd']:.4f} "
         f"bits/dim** (the ideal code length). Our stream: {ours_set['bpd']:.4f} bits/dim; "
         f"the difference is the coder's overhead (ANS state, chunk framing, table "
         f"quantization, escapes). A one-image file carries "
         f"{info['per_image_framing_bytes']} bytes of header and framing besides its ANS "
         f"words."),
        "",
        *_table(rows),
        "",
        "## Goals",
        "",
        *_goals(rows, info),
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"rows": rows, **info,
                                                     "machine": machine()}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
