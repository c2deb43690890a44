"""PNG outputs: image grids (Pillow), 2-D scatter plots and loss curves (matplotlib, Agg)."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .checkpoint import atomic_write_bytes

__all__ = [
    "image_grid",
    "levels_to_uint8",
    "save_figure",
    "save_histograms",
    "save_image_grid",
    "save_inversion",
    "save_loss_curve",
    "save_scatter",
]


def levels_to_uint8(levels: np.ndarray, n_bins: int) -> np.ndarray:
    """Integer levels in ``[0, n_bins)`` -> 0..255 with the top level at 255."""
    return np.round(np.asarray(levels, dtype=np.float64) * 255.0 / (n_bins - 1)).astype(np.uint8)


def image_grid(images: np.ndarray, nrow: int | None = None, pad: int = 1) -> np.ndarray:
    """``(N, C, H, W)`` uint8 -> one ``(H', W', C)`` uint8 array with ``nrow`` per row."""
    n, c, h, w = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    grid = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + k * (w + pad)
        grid[y : y + h, x : x + w] = images[i].transpose(1, 2, 0)
    return grid


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def save_image_grid(
    levels: np.ndarray, n_bins: int, path: str | Path, nrow: int | None = None, min_size: int = 256
) -> Path:
    """Save integer-level images ``(N, C, H, W)`` as one PNG grid, upscaled (nearest) so that
    small images such as 8x8 digits stay visible. Written atomically."""
    grid = image_grid(levels_to_uint8(levels, n_bins), nrow)
    img = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    scale = max(1, math.ceil(min_size / max(img.size)))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    path = Path(path)
    atomic_write_bytes(path, _png_bytes(img))
    return path


def _figure_bytes(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def save_figure(fig: Any, path: str | Path) -> Path:
    """Save a matplotlib figure as PNG atomically (never a half-written file)."""
    path = Path(path)
    atomic_write_bytes(path, _figure_bytes(fig))
    return path


def save_scatter(points: np.ndarray, path: str | Path, title: str = "") -> Path:
    """2-D samples ``(N, 2)`` (or the first two coordinates) as a scatter plot PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 4))
    ax = fig.add_subplot()
    ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5)
    ax.set_aspect("equal")
    ax.set_title(title)
    path = Path(path)
    atomic_write_bytes(path, _figure_bytes(fig))
    return path


def save_loss_curve(records: list[dict[str, Any]], path: str | Path, metric: str = "bpd",
                    label: str = "bits/dim") -> Path | None:
    """Train and validation ``metric`` against the step, from metrics-log records."""
    from matplotlib.figure import Figure

    tk, vk = f"train_{metric}", f"val_{metric}"
    train = [(r["step"], r[tk]) for r in records if isinstance(r.get(tk), float)]
    val = [(r["step"], r[vk]) for r in records if isinstance(r.get(vk), float)]
    if not train and not val:
        return None
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    if train:
        ax.plot(*zip(*train), label="train")
    if val:
        ax.plot(*zip(*val), marker="o", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel(label)
    ax.legend()
    ax.grid(alpha=0.3)
    path = Path(path)
    atomic_write_bytes(path, _figure_bytes(fig))
    return path


def save_rate_distortion(mse_by_k: dict[int, float], path: str | Path,
                         title: str = "") -> Path:
    """Reconstruction MSE (log scale) against the code size k (log scale), PSNR on the right."""
    from matplotlib.figure import Figure

    ks = sorted(mse_by_k)
    # An exact reconstruction has MSE 0: drawn at the bottom of the axis, marked "exact".
    finite = [mse_by_k[k] for k in ks if mse_by_k[k] > 0] or [1e-12]
    floor = min(finite) / 10
    ys = [max(mse_by_k[k], floor) for k in ks]
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ax.plot(ks, ys, marker="o")
    for k, y in zip(ks, ys, strict=True):
        if mse_by_k[k] <= 0:
            ax.annotate("exact", (k, y), textcoords="offset points", xytext=(-10, 6))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("code size k")
    ax.set_ylabel("MSE per pixel ([0, 1] scale)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    path = Path(path)
    atomic_write_bytes(path, _figure_bytes(fig))
    return path


def save_inversion(x: np.ndarray, back: np.ndarray, path: str | Path, title: str = "") -> Path:
    """Rows of original | reconstruction | difference for grey or RGB images ``(N, C, H, W)``
    in [0, 1]. The difference has its own colour scale, given above its column, since an
    exact inverse leaves only rounding noise."""
    from matplotlib.figure import Figure

    n = x.shape[0]
    diff = np.abs(back - x)
    dmax = float(diff.max()) if diff.size else 0.0
    fig = Figure(figsize=(4.5, 1.4 * n + 0.6))
    axes = fig.subplots(n, 3, squeeze=False)
    heads = ("original", "reconstruction", f"|difference|, 0 to {dmax:.1e}")
    for i in range(n):
        for j, img in enumerate((x[i], back[i], diff[i])):
            ax = axes[i, j]
            shown = img.mean(axis=0) if j == 2 else np.clip(img.transpose(1, 2, 0), 0, 1)
            if shown.ndim == 3 and shown.shape[-1] == 1:
                shown = shown[..., 0]
            vmax = max(dmax, 1e-30) if j == 2 else 1.0
            ax.imshow(shown, cmap="magma" if j == 2 else "gray", vmin=0, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(heads[j], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def save_histograms(values: dict[str, np.ndarray], path: str | Path, xlabel: str,
                    title: str = "") -> Path:
    """Overlaid histograms of one figure (e.g. bits/dim) for several named sets."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    finite = [v[np.isfinite(v)] for v in values.values()]
    lo = min((float(v.min()) for v in finite if v.size), default=0.0)
    hi = max((float(v.max()) for v in finite if v.size), default=1.0)
    bins = np.linspace(lo, hi if hi > lo else lo + 1, 60).tolist()
    for (name, _), v in zip(values.items(), finite, strict=True):
        ax.hist(v, bins=bins, alpha=0.55, label=f"{name} (median {np.median(v):.2f})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("images")
    ax.legend()
    if title:
        ax.set_title(title)
    return save_figure(fig, path)
