"""``invertible reconstruct RUN codes.npy -o recon.png``: codes -> data (autoencoder runs)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._runs import add_run_args, autoencoder_of, open_from_args
from .common import UsageError, npy_bytes, output_path, positive_float, say, warn


def add_parser(sub: Any) -> None:
    p = sub.add_parser("reconstruct", help="k-dimensional codes -> images (autoencoder and VAE runs)",
                       description="Decode codes written by 'invertible reduce': the dropped "
                       "coordinates are filled with zeros (the prior's mode) or, with --fill "
                       "sample, drawn from the prior (a new image with the same code). A VAE "
                       "run decodes its whole latent to the decoder's mean image.")
    add_run_args(p)
    p.add_argument("codes", help="codes.npy, or codes.npz with a 'codes' array")
    p.add_argument("--fill", choices=["zeros", "sample"], default="zeros")
    p.add_argument("--temperature", "-t", type=positive_float, default=1.0,
                   help="with --fill sample: the prior's temperature")
    p.add_argument("--seed", type=int, default=None, help="with --fill sample: fix the draw")
    p.add_argument("-o", "--output", required=True, help="recon.png (grid) or recon.npy")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.set_defaults(run=run)


def read_codes(path: Path) -> np.ndarray:
    """A float array ``(N, k)`` from a .npy file or the 'codes' entry of a .npz file."""
    if not path.is_file():
        raise UsageError(f"codes file {path} does not exist")
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                if "codes" not in data.files:
                    raise UsageError(f"{path} has no 'codes' array (it holds "
                                     f"{', '.join(data.files) or 'nothing'})")
                data = data["codes"]
    except (OSError, ValueError, EOFError) as err:
        raise UsageError(f"cannot read {path} as .npy/.npz ({err})") from None
    a = np.asarray(data)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.floating):
        raise UsageError(f"{path} must hold float codes (N, k), got {a.dtype} {a.shape}")
    if not np.all(np.isfinite(a)):
        raise UsageError(f"{path} contains non-finite codes")
    return a


def run(args: argparse.Namespace) -> int:
    from ..training.checkpoint import atomic_write_bytes
    from ..training.objectives import VAEObjective, fixed_rng
    from ..training.plots import save_image_grid

    out = output_path(args.output, args.force, (".png", ".npy"))
    codes = read_codes(Path(args.codes))
    r = open_from_args(args)
    obj = autoencoder_of(r, "reconstruct")
    k = codes.shape[1]
    if k > obj.dims:
        raise UsageError(f"the codes have width {k}, more than the data dimension {obj.dims}")
    if k != obj.code_size and not isinstance(obj, VAEObjective):
        # Codes are prefixes of one ordered latent, so another width still decodes.
        warn(f"warning: the codes have width {k}, the run was trained for {obj.code_size}")
    c = torch.from_numpy(codes).to(obj.device, obj.dtype)
    seed = args.seed if args.seed is not None else int(torch.randint(2**31, ()))
    with torch.no_grad(), fixed_rng(seed, obj.device):
        x = torch.cat([obj.decode_codes(c[s : s + 256], args.fill, args.temperature)
                       for s in range(0, len(c), 256)])
    levels = obj.to_levels(x).cpu().numpy()
    if out.suffix.lower() == ".npy":
        atomic_write_bytes(out, npy_bytes(levels))
    else:
        assert obj.n_bins is not None
        save_image_grid(levels, obj.n_bins, out)
    say(f"reconstructed {len(levels)} image(s) from {k}-dimensional codes "
        f"({args.fill} fill) to {out}")
    return 0
