"""The measured-leakage report of a flow run: every attack on the same held-out test images.

``measure`` runs the attacks (``invertible.privacy.attacks``), the membership inference
(``membership``) and the utility classifiers (``utility``) and returns the figures as a
JSON-ready dict plus example reconstructions; ``to_markdown`` and ``save_report_figure``
turn them into the report's ``.md`` and ``.png``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .attacks import decode_to_unit, fresh_models, psnr, ssim, train_decoder
from .membership import likelihood_scores, mia_auc, tpr_at_fpr
from .release import decode_model_space, encode_levels
from .utility import CLASSIFIERS, classifier_accuracy, synthetic_samples

__all__ = ["ReportSettings", "json_safe", "leakage_rows", "measure", "save_report_figure",
           "to_markdown"]

DECODERS = ("mlp", "conv")
#: The report's parts, in order; ``ReportSettings.sections`` picks some.
SECTIONS = ("reconstruction", "membership", "utility", "synthetic")
_DECODER_NAMES = {"mlp": "MLP decoder", "conv": "conv decoder"}
N_EXAMPLES = 8


@dataclass
class ReportSettings:
    """Sizes of the report. ``n_list``: known-plaintext pair counts; ``targets``: the held-out
    test images every attack is scored on; ``seeds``: freshly initialised models."""

    n_list: list[int] = field(default_factory=lambda: [10, 100, 1000, 10000])
    targets: int = 1000
    attack_steps: int = 2000
    attack_batch: int = 64
    decoder_hidden: int = 1024
    seeds: int = 3
    mia_n: int = 1000
    utility_train: int = 10000
    utility_test: int | None = None
    synthetic_n: int = 10000
    seed: int = 0
    sections: tuple[str, ...] = SECTIONS


def _unit(levels: Tensor, n_bins: int) -> np.ndarray:
    return levels.double().numpy() / (n_bins - 1)


def _scores(ref: np.ndarray, est: np.ndarray) -> dict[str, float]:
    return {"psnr": float(np.mean(psnr(ref, est))), "ssim": float(np.mean(ssim(ref, est)))}


def _flow_decode(obj: Any, codes: Tensor, labels: Tensor | None, n_bins: int,
                 ref: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    x = decode_model_space(obj, codes, labels)
    est, bad = decode_to_unit(x, n_bins)
    return {**_scores(ref, est), "non_finite": bad}, est


def measure(objective: Any, config: Any, data: dict[str, Any], train: Any, test: Any,
            settings: ReportSettings, independent: Sequence[tuple[str, Any]] = (),
            log: Callable[[str], None] = print) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Run the measurements of ``settings.sections`` on ``objective`` (a loaded image flow run) with its ``train`` and
    ``test`` splits. ``independent``: ``(name, objective)`` of other runs of the same
    architecture. Returns ``(results, examples)``: the figures, and ``[0, 1]`` images of the
    first targets (``"original"`` and one entry per attacker) for the figure."""
    obj, st = objective, settings
    n_bins = int(obj.n_bins)
    cond = bool(getattr(obj, "conditional", False))
    labelled = train.y is not None and test.y is not None
    g = torch.Generator().manual_seed(st.seed)
    perm = torch.randperm(len(train), generator=g)
    ns = sorted({min(n, len(train)) for n in st.n_list})
    n_t = min(st.targets, len(test) - min(len(test) // 2, 256))
    n_ut = min(st.utility_test or len(test), len(test))
    n_enc = min(len(train), max(max(ns), st.utility_train if labelled else 0, st.mia_n))
    tr_idx = perm[:n_enc]
    tr_x, tr_y = train.x[tr_idx], (train.y[tr_idx] if train.y is not None else None)
    n_test_enc = max(n_t, n_ut if labelled else 0)
    te_x, te_y = test.x[:n_test_enc], (test.y[:n_test_enc] if test.y is not None else None)
    log(f"encoding {n_enc} training and {n_test_enc} test image(s) ...")
    tr_codes = encode_levels(obj, tr_x, tr_y)
    te_codes = encode_levels(obj, te_x, te_y)
    tgt_codes, tgt_y = te_codes[:n_t], (te_y[:n_t] if te_y is not None else None)
    ref = _unit(te_x[:n_t], n_bins)
    res: dict[str, Any] = {
        "run": {"task": config.task, "model": config.model, "data": data.get("name"),
                "shape": list(obj.shape), "n_bins": n_bins, "conditional": cond,
                "code_dims": int(tr_codes.shape[1])},
        "settings": asdict(st),
        "targets": n_t,
    }
    examples: dict[str, np.ndarray] = {"original": ref[:N_EXAMPLES]}
    for key in ("holder", "baseline_mean_image", "known_plaintext", "fresh_init",
                "independent", "membership", "utility", "synthetic"):
        res[key] = None
    if "reconstruction" in st.sections:
        _reconstruction(res, examples, obj, config, data, test, independent, st, log,
                        tr_x, tr_codes, te_x, tgt_codes, tgt_y, ref, ns, n_t)
    if "membership" in st.sections:
        _membership(res, obj, train, test, tr_x, tr_y, st, log)
    if "utility" in st.sections and labelled:
        assert tr_y is not None and te_y is not None
        n_u = min(st.utility_train, len(train))
        log(f"utility classifiers on {n_u} training example(s) ...")
        yt, ye = tr_y[:n_u].numpy(), te_y[:n_ut].numpy()
        res["utility"] = {
            "train": n_u, "test": n_ut,
            "codes": classifier_accuracy(tr_codes[:n_u].numpy(), yt,
                                         te_codes[:n_ut].numpy(), ye, st.seed),
            "pixels": classifier_accuracy(_unit(tr_x[:n_u], n_bins), yt,
                                          _unit(te_x[:n_ut], n_bins), ye, st.seed),
        }
    if "synthetic" in st.sections and cond and labelled:
        assert te_y is not None and train.y is not None
        log(f"synthetic-data utility: {st.synthetic_n} class-balanced sample(s) ...")
        sx, sy = synthetic_samples(obj, st.synthetic_n)
        n_real = min(st.synthetic_n, len(train))
        real_idx = perm[:n_real]
        ye = te_y[:n_ut].numpy()
        res["synthetic"] = {
            "n": st.synthetic_n, "real_n": n_real, "test": n_ut,
            "synthetic": classifier_accuracy(_unit(sx, n_bins), sy.numpy(),
                                             _unit(te_x[:n_ut], n_bins), ye, st.seed),
            "real": classifier_accuracy(_unit(train.x[real_idx], n_bins),
                                        train.y[real_idx].numpy(),
                                        _unit(te_x[:n_ut], n_bins), ye, st.seed),
        }
    return res, examples


def _reconstruction(res: dict[str, Any], examples: dict[str, np.ndarray], obj: Any,
                    config: Any, data: dict[str, Any], test: Any,
                    independent: Sequence[tuple[str, Any]], st: ReportSettings,
                    log: Callable[[str], None], tr_x: Tensor, tr_codes: Tensor, te_x: Tensor,
                    tgt_codes: Tensor, tgt_y: Tensor | None, ref: np.ndarray, ns: list[int],
                    n_t: int) -> None:
    """The reconstruction attacks on the targets' codes, into ``res`` and ``examples``."""
    n_bins = int(obj.n_bins)
    # Model holder: the true weights.
    x_true = decode_model_space(obj, tgt_codes, tgt_y)
    levels = obj.to_levels(x_true)
    holder_unit = _unit(levels, n_bins)
    res["holder"] = {
        **_scores(ref, holder_unit),
        "max_abs_error_levels": int((levels.long() - te_x[:n_t].long()).abs().max()),
        "max_abs_error_model": float((x_true.double()
                                      - obj.center(te_x[:n_t]).double().cpu()).abs().max()),
    }
    public = test.x[n_t:]
    res["baseline_mean_image"] = _scores(ref, np.broadcast_to(
        _unit(public, n_bins).mean(0, keepdims=True), ref.shape).copy())

    # Known-plaintext: n (image, code) pairs from the training split.
    mean, std = tr_codes.mean(0), tr_codes.std(0, unbiased=False)
    kp: dict[str, list[dict[str, Any]]] = {k: [] for k in DECODERS}
    for n in ns:
        pairs_x = torch.from_numpy(_unit(tr_x[:n], n_bins)).float()
        for kind in DECODERS:
            log(f"known-plaintext {_DECODER_NAMES[kind]}, n={n} ...")
            predict = train_decoder(kind, tr_codes[:n], pairs_x, st.attack_steps,
                                    hidden=st.decoder_hidden, batch_size=st.attack_batch,
                                    seed=st.seed, mean=mean, std=std, device=obj.device)
            est = predict(tgt_codes)
            kp[kind].append({"n": n, **_scores(ref, est)})
            if n == ns[-1]:
                examples[f"{_DECODER_NAMES[kind]}, n={n}"] = est[:N_EXAMPLES]
    res["known_plaintext"] = kp

    # Architecture-only: fresh initialisations (ActNorm init on public test images).
    log(f"architecture-only: {st.seeds} fresh model(s) ...")
    pub_y = test.y[n_t:][:2048] if test.y is not None else None
    fresh = []
    for seed, model in zip(range(st.seeds), fresh_models(config, data, range(st.seeds),
                                                         public[:2048], pub_y, obj.device),
                           strict=True):
        r, est = _flow_decode(model, tgt_codes, tgt_y, n_bins, ref)
        fresh.append({"seed": seed, **r})
        if seed == 0:
            examples["fresh init, seed 0"] = est[:N_EXAMPLES]
    res["fresh_init"] = fresh
    indep = []
    for name, model in independent:
        r, est = _flow_decode(model, tgt_codes, tgt_y, n_bins, ref)
        indep.append({"run": name, **r})
        if len(indep) == 1:
            examples["independent run"] = est[:N_EXAMPLES]
    res["independent"] = indep



def _membership(res: dict[str, Any], obj: Any, train: Any, test: Any, tr_x: Tensor,
                tr_y: Tensor | None, st: ReportSettings, log: Callable[[str], None]) -> None:
    """Likelihood threshold: training members vs test non-members."""
    m = min(st.mia_n, len(train), len(test))
    log(f"membership inference on {m} + {m} image(s) ...")
    s_in = likelihood_scores(obj, tr_x[:m], tr_y[:m] if tr_y is not None else None)
    s_out = likelihood_scores(obj, test.x[:m], test.y[:m] if test.y is not None else None)
    res["membership"] = {"n": m, "auc": mia_auc(s_in, s_out),
                         "tpr_at_1pct_fpr": tpr_at_fpr(s_in, s_out, 0.01),
                         "member_bpd": float(-np.mean(s_in)),
                         "nonmember_bpd": float(-np.mean(s_out))}


# -- output -----------------------------------------------------------------------------------
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


def _db(v: float) -> str:
    return "inf" if v == math.inf else f"{v:.2f}"


def leakage_rows(res: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(attacker, knowledge, PSNR dB, SSIM) rows of the main table."""
    h = res["holder"]
    rows = [("model holder", "the weights (the key)", _db(h["psnr"]), f"{h['ssim']:.3f}")]
    for kind in DECODERS:
        for r in res["known_plaintext"][kind]:
            rows.append((f"known-plaintext, {_DECODER_NAMES[kind]}", f"n = {r['n']} pairs",
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
             f"seed) is above a threshold. {m['n']} training members against {m['n']} test "
             "non-members."),
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
        "conv net (linear to a feature map at a quarter of the resolution, two upsampling "
        "convolutions). Codes are standardised with the released training codes' statistics. "
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
                label=f"known-plaintext, {_DECODER_NAMES[kind]}")
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
