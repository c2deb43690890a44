"""``invertible reduce RUN -o codes.npy``: data -> k-dimensional codes of an autoencoder run."""

from __future__ import annotations

import argparse
import dataclasses
import io
from typing import Any

import numpy as np
import torch

from ._runs import add_run_args, autoencoder_of, load_run_split, open_from_args
from .common import UsageError, npy_bytes, output_path, positive_int, say


def add_parser(sub: Any) -> None:
    p = sub.add_parser("reduce", help="data -> k-dimensional codes (autoencoder and VAE runs)",
                       description="Encode a data split with an invertible autoencoder run and "
                       "keep the first k latent coordinates (the run's code size, or --k). "
                       "A .npz output holds 'codes' and, when the data has them, 'labels'; a "
                       ".npy output holds the codes and puts labels in NAME.labels.npy. A VAE run's "
                       "codes are its posterior means, all of its latent dimensions.")
    add_run_args(p, data=True)
    p.add_argument("--data", default=None,
                   help="dataset name (default the run's; it must have the run's shape)")
    p.add_argument("--split", choices=["train", "val", "test"], default="test")
    p.add_argument("-k", "--code-size", type=positive_int, default=None,
                   help="keep this many coordinates (default the run's code size)")
    p.add_argument("-n", "--num", type=positive_int, default=None, help="the first N examples")
    p.add_argument("-o", "--output", required=True, help="codes.npy or codes.npz")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..training.checkpoint import atomic_write_bytes

    out = output_path(args.output, args.force, (".npy", ".npz"))
    r = open_from_args(args)
    obj = autoencoder_of(r, "reduce")
    k = args.code_size or obj.code_size
    if k > obj.dims:
        raise UsageError(f"-k {k} is larger than the data dimension {obj.dims}")
    if args.data is not None:
        r.config = dataclasses.replace(r.config, data=args.data)
    split = load_run_split(r, args.split, args.data_dir)
    n = min(args.num or len(split), len(split))
    codes = []
    with torch.no_grad():
        for start in range(0, n, 256):
            xb = split.x[start : min(start + 256, n)].to(obj.device)
            codes.append(obj.encode_codes(xb, k).float().cpu())
    c = torch.cat(codes).numpy()
    labels = split.y[:n].numpy() if split.y is not None else None
    if out.suffix.lower() == ".npz":
        buf = io.BytesIO()
        if labels is not None:
            np.savez(buf, codes=c, labels=labels)
        else:
            np.savez(buf, codes=c)
        atomic_write_bytes(out, buf.getvalue())
        where = f"{out} (codes{', labels' if labels is not None else ''})"
    else:
        side = out.with_name(out.stem + ".labels.npy")
        if labels is not None and side.exists() and not args.force:
            raise UsageError(f"output {side} exists (use --force to overwrite it)")
        atomic_write_bytes(out, npy_bytes(c))
        where = str(out)
        if labels is not None:
            atomic_write_bytes(side, npy_bytes(labels))
            where += f", labels in {side}"
    say(f"reduced {n} example(s) of {r.config.data} ({args.split}) from {obj.dims} to {k} "
        f"dimensions: {where}")
    return 0
