"""The privacy report's outputs: the Markdown text, the console rows and the figure, from the
figures ``invertible.privacy.report.measure`` returns."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .attacks import conv_width
from .report import DECODER_NAMES, DECODERS
from .utility import CLASSIFIERS

__all__ = ["json_safe", "leakage_rows", "save_report_figure", "to_markdown"]

def json_safe(value: Any) -> Any:
    """``value`` with infinite floats as the strings "inf"/"-inf" and NaN as None."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        v = float(value)
        return v if math.isfinite(v) else None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(value, np.integer):
        return int(value)
    return value


def _db(v: float | str) -> str:
    v = float(v)  # a report read back from JSON holds "inf" as a string
    return "inf" if v == math.inf else f"{v:.2f}"


def leakage_rows(res: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(attacker, knowledge, PSNR dB, SSIM) rows of the main table."""
    h = res["holder"]
    rows = [("model holder", "the weights (the key)", _db(h["psnr"]), f"{h['ssim']:.3f}")]
    for kind in DECODERS:
        for r in res["known_plaintext"][kind]:
            rows.append((f"known-plaintext, {DECODER_NAMES[kind]}", f"n = {r['n']} pairs",
                         _db(r["psnr"]), f"{r['ssim']:.3f}"))
    for r in res["fresh_init"]:
        nf = f", {r['non_finite']} non-finite" if r["non_finite"] else ""
        rows.append(("architecture only", f"fresh init, seed {r['seed']}{nf}", _db(r["psnr"]),
                     f"{r['ssim']:.3f}"))
    for r in res["independent"]:
        nf = f", {r['non_finite']} non-finite" if r["non_finite"] else ""
        rows.append(("architecture only", f"independent run {Path(r['run']).name}{nf}",
                     _db(r["psnr"]), f"{r['ssim']:.3f}"))
    b = res["baseline_mean_image"]
    rows.append(("no attack (reference)", "the mean public image", _db(b["psnr"]),
                 f"{b['ssim']:.3f}"))
    return rows


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(r) + " |" for r in rows]]


def _acc(d: dict[str, float], name: str) -> str:
    v = d[name]
    return "n/a" if math.isnan(v) else f"{100 * v:.2f}%"


def to_markdown(res: dict[str, Any], run_name: str) -> str:
    """The report as Markdown: what each attack means, the tables, and what is not protected."""
    run = res["run"]
    lines = [
        f"# Privacy report: {run_name}",
        "",
        (f"Run: task `{run['task']}`, model `{run['model']}`, data `{run['data']}` "
        f"{tuple(run['shape'])} with {run['n_bins']} levels"
        f"{', class-conditional' if run['conditional'] else ''}; codes of "
        f"{run['code_dims']} dimensions (the flow's full latent z = f(x))."),
        "",
        ("**The encoding is not encryption.** The flow is an exact bijection: whoever holds the "
        "model's weights decodes every code exactly. The weights are the key; the architecture "
        "and the training recipe are not. Below, what attackers with less than the weights "
        "recover, measured on the same "
        f"{res['targets']} held-out test images (the first of the test split; never used for "
        "training or by any attacker for anything but scoring)."),
        "",
    ]
    if res["holder"] is not None:
        lines += _reconstruction_markdown(res)
    m = res["membership"]
    if m is not None:
        lines += [
            "## Membership inference on the model",
            "",
            ("The likelihood-threshold attack: an image is called a training member when the "
             "model's log-likelihood of it (minus bits/dim, dequantization noise at a fixed "
             f"seed) is above a threshold. {m['n']} training members against {m['n']} "
             f"non-members from the run's {m.get('nonmembers', 'test')} split (held out of "
             "training)."),
            "",
            *_table(("ROC AUC", "TPR at 1% FPR", "members' bits/dim", "non-members' bits/dim"),
                    [(f"{m['auc']:.4f}", f"{100 * m['tpr_at_1pct_fpr']:.2f}%",
                      f"{m['member_bpd']:.4f}", f"{m['nonmember_bpd']:.4f}")]),
            "",
            ("An AUC of 0.5 means the likelihood tells members from non-members no better than "
             "a coin; this attack needs the model, so it measures what the model (not the "
             "codes) reveals about its training set. Only differentially private training "
             "bounds it."),
            "",
        ]
    lines += _utility_markdown(res)
    return "\n".join(lines)


def _reconstruction_markdown(res: dict[str, Any]) -> list[str]:
    st = res["settings"]
    h = res["holder"]
    return [
        "## Reconstruction attacks",
        "",
        ("PSNR in dB with data range 1 (images in [0, 1]), computed per image and then "
        "averaged; SSIM (scikit-image, data range 1) likewise. Higher is more leakage; inf "
        "is an exact copy."),
        "",
        *_table(("attacker", "knowledge", "PSNR (dB)", "SSIM"), leakage_rows(res)),
        "",
        (f"- **Model holder**: decodes with the true weights. Max abs error "
        f"{h['max_abs_error_levels']} levels ({h['max_abs_error_model']:.2e} in model space, "
        "before flooring to levels): exact recovery."),
        (f"- **Known-plaintext attacker**: holds n (image, code) pairs from the training split "
        f"and all released codes; trains a decoder code -> image by MSE with Adam "
        f"({st['attack_steps']} steps, batches of {st['attack_batch']}): an MLP "
        f"(D -> {st['decoder_hidden']} -> {st['decoder_hidden']} -> D, sigmoid) and a small "
        f"conv net (linear to a {conv_width(st['decoder_hidden'])}-channel feature map at a "
        "quarter of the resolution, two upsampling convolutions). Codes are standardised with the released training codes' statistics. "
        "This is what an analyst who also knows a few of the originals can do."),
        ("- **Architecture-only attacker**: has the architecture and the config but not the "
        "weights. It decodes the codes with freshly initialised models of the same "
        "architecture (data-dependent initialisation on public test images disjoint from the "
        "targets), and with independently trained runs of it when given (`--independent`). "
        "Non-finite decodes are clamped to [0, 1] and counted."),
        ("- **No attack (reference)**: the mean of public images, the PSNR of knowing nothing "
        "about the image."),
        "",
    ]


def _utility_markdown(res: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    u = res["utility"]
    if u is not None:
        lines += [
            "## Utility of the codes",
            "",
            (f"Classifiers (inputs standardised) trained on {u['train']} training examples, "
            f"tested on {u['test']} test examples: on the codes (what an analyst has) against "
            "the same classifiers on the pixels."),
            "",
            *_table(("classifier", "on codes", "on pixels"),
                    [(c, _acc(u["codes"], c), _acc(u["pixels"], c)) for c in CLASSIFIERS]),
            "",
        ]
    s = res["synthetic"]
    if s is not None:
        lines += [
            "## Synthetic-data utility",
            "",
            (f"{s['n']} samples of the class-conditional flow, balanced over classes (fixed "
            f"seed), train the same classifiers; tested on {s['test']} real test examples; "
            f"beside them, the classifiers trained on {s['real_n']} real training examples."),
            "",
            *_table(("classifier", "on synthetic", "on real"),
                    [(c, _acc(s["synthetic"], c), _acc(s["real"], c)) for c in CLASSIFIERS]),
            "",
        ]
    lines += [
        "## What is and is not protected",
        "",
        ("- Codes without the weights: protected only as far as the attacks above fail; "
        "a few known (image, code) pairs already buy the attacker a decoder (see the "
        "known-plaintext rows and the figure)."),
        ("- Anyone with the weights (a leaked checkpoint, the model owner) recovers every "
        "image exactly."),
        ("- The model itself leaks membership of its training images to the degree measured "
        "above; releasing samples or the model is not private unless it was trained with "
        "differential privacy (`train --dp-epsilon ...`)."),
        "",
    ]
    if res["holder"] is not None:
        lines += ["Figure: `privacy_report.png` (PSNR against n, and example reconstructions).",
                  ""]
    return lines


def save_report_figure(res: dict[str, Any], examples: dict[str, np.ndarray],
                       path: str | Path) -> Path:
    """PSNR of the known-plaintext decoders against n (log x), the architecture-only results
    as horizontal lines, and a panel of example reconstructions."""
    from matplotlib.figure import Figure

    from ..training.plots import image_grid, save_figure

    fig = Figure(figsize=(12, 4.5))
    ax = fig.add_subplot(1, 2, 1)
    for kind, marker in zip(DECODERS, ("o", "s"), strict=True):
        pts = res["known_plaintext"][kind]
        ax.plot([p["n"] for p in pts], [p["psnr"] for p in pts], marker=marker,
                label=f"known-plaintext, {DECODER_NAMES[kind]}")
    fresh = [r["psnr"] for r in res["fresh_init"]]
    lines: list[tuple[float, str, str, str | None]] = []
    if fresh:
        lines.append((float(np.mean(fresh)), "tab:red", "--",
                      f"architecture only: fresh init (mean of {len(fresh)})"))
    for i, r in enumerate(res["independent"]):
        lines.append((r["psnr"], "tab:purple", ":",
                      "architecture only: independent run" if i == 0 else None))
    lines.append((res["baseline_mean_image"]["psnr"], "grey", "-.", "mean public image"))
    finite = [p["psnr"] for k in DECODERS for p in res["known_plaintext"][k]]
    finite = [v for v in finite + [v for v, *_ in lines] if math.isfinite(v)]
    top = max(finite, default=0.0) + 3.0  # where an exact (inf) result is drawn
    for value, color, style, label in lines:
        exact = not math.isfinite(value)
        ax.axhline(top if exact else value, color=color, ls=style,
                   label=f"{label}: inf (exact)" if exact and label else label)
    ax.set_xscale("log")
    ax.set_xlabel("known (image, code) pairs n")
    ax.set_ylabel("PSNR (dB, data range 1, mean over targets)")
    ax.set_title("Reconstruction of held-out test images from codes\n"
                 "(model holder: PSNR = inf)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)

    panel = fig.add_subplot(1, 2, 2)
    names = list(examples)
    rows = []
    for name in names:
        imgs = np.clip(np.round(examples[name] * 255), 0, 255).astype(np.uint8)
        rows.append(image_grid(imgs, nrow=len(imgs)))
    grid = np.concatenate(rows, axis=0)
    panel.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=255,
                 interpolation="nearest")
    step = grid.shape[0] / len(rows)
    panel.set_yticks([step * (i + 0.5) for i in range(len(rows))], names, fontsize=8)
    panel.set_xticks([])
    panel.set_title("held-out targets (top) and reconstructions", fontsize=10)
    return save_figure(fig, path)
