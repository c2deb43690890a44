"""``invertible privacy-report RUN``: measured leakage of a flow's codes and of the model.

Writes ``privacy_report.md``, ``.json`` and ``.png`` into ``RUN/privacy`` (or ``-o``) and
prints the main table. See ``invertible.privacy.report``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ._runs import add_run_args, load_run_split, open_from_args
from .common import UsageError, nonneg_int, positive_int, say

NAMES = ("privacy_report.md", "privacy_report.json", "privacy_report.png")


def _n_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 10,100,1000, got '{text}'") from None
    return values


def _sections(text: str) -> tuple[str, ...]:
    from ..privacy.report import SECTIONS

    values = tuple(v.strip() for v in text.split(",") if v.strip())
    bad = [v for v in values if v not in SECTIONS]
    if bad or not values:
        raise argparse.ArgumentTypeError(f"sections are {', '.join(SECTIONS)}; got '{text}'")
    return values


def add_parser(sub: Any) -> None:
    from ..privacy.report import ReportSettings

    d = ReportSettings()  # the defaults live with the settings, stated once
    p = sub.add_parser(
        "privacy-report", help="measured leakage: reconstruction attacks on the codes, "
        "membership inference, utility",
        description="Attacks on a flow run's released codes, each scored on the same held-out "
        "test images: the model holder (exact), a known-plaintext attacker with n (image, code) "
        "pairs training an MLP and a conv decoder, an architecture-only attacker decoding with "
        "freshly initialised (or --independent) models; the likelihood-threshold membership "
        "inference; classifiers on codes vs pixels, and for conditional runs on synthetic "
        "samples vs real data. Writes privacy_report.md, .json and .png.")
    add_run_args(p, data=True)
    p.add_argument("-o", "--out-dir", default=None, help="output folder (default RUN/privacy)")
    p.add_argument("--force", action="store_true", help="overwrite an existing report")
    p.add_argument("--n", dest="n_list", type=_n_list, default=d.n_list,
                   metavar="N,N,...", help="known-plaintext pair counts (default "
                   "10,100,1000,10000; capped at the training split's size)")
    p.add_argument("--targets", type=positive_int, default=d.targets,
                   help="held-out test images every attack is scored on (default %(default)s; at most "
                   "the test split less a public part for data-dependent init)")
    p.add_argument("--attack-steps", type=positive_int, default=d.attack_steps,
                   help="Adam steps of each known-plaintext decoder (default %(default)s)")
    p.add_argument("--attack-batch", type=positive_int, default=d.attack_batch,
                   help="batch size of the known-plaintext decoders (default %(default)s)")
    p.add_argument("--decoder-hidden", type=positive_int, default=d.decoder_hidden,
                   help="width of the MLP decoder (default %(default)s)")
    p.add_argument("--seeds", type=nonneg_int, default=d.seeds,
                   help="freshly initialised models for the architecture-only attack (default %(default)s)")
    p.add_argument("--independent", nargs="+", default=[], metavar="RUN2",
                   help="independently trained runs of the same architecture to decode with")
    p.add_argument("--mia-n", type=positive_int, default=d.mia_n,
                   help="members and non-members for membership inference (default %(default)s)")
    p.add_argument("--utility-train", type=positive_int, default=d.utility_train,
                   help="training examples for the utility classifiers (default %(default)s)")
    p.add_argument("--utility-test", type=positive_int, default=None,
                   help="test examples for the utility classifiers (default all)")
    p.add_argument("--synthetic-n", type=positive_int, default=d.synthetic_n,
                   help="conditional runs: synthetic samples for the classifiers (default %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the attacks' randomness")
    p.add_argument("--sections", type=_sections, default=None, metavar="S,S,...",
                   help="the parts to measure, of reconstruction, membership, utility, "
                   "synthetic (default all; e.g. membership,synthetic for a DP run)")
    p.set_defaults(run=run)


def _same_architecture(r: Any, other: Any, name: str) -> None:
    keys = ("task", "model", "model_options", "conditional", "dequant", "task_options")
    a, b = r.config.to_dict(), other.config.to_dict()
    diff = [k for k in keys if a.get(k) != b.get(k)]
    for k in ("shape", "n_bins", "n_classes"):
        if r.data.get(k) != other.data.get(k):
            diff.append(k)
    if diff:
        raise UsageError(f"--independent run {name} is not of the same architecture (its "
                         f"{', '.join(diff)} differ)")


def run(args: argparse.Namespace) -> int:
    from ..privacy.release import release_flow
    from ..privacy.report import ReportSettings, measure
    from ..privacy.report_output import json_safe, leakage_rows, save_report_figure, to_markdown
    from ..training.checkpoint import atomic_write_text
    from ..training.run import open_run
    from .common import resolve_device, warn

    out_dir = Path(args.out_dir) if args.out_dir is not None else Path(args.run_dir) / "privacy"
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"output {out_dir} is not a folder")
    existing = [n for n in NAMES if (out_dir / n).exists()]
    if existing and not args.force:
        raise UsageError(f"{out_dir / existing[0]} exists (use --force to overwrite the report)")
    if len(args.n_list) < 2 or min(args.n_list) < 2:
        raise UsageError(f"--n needs at least two pair counts, each >= 2, got "
                         f"{','.join(map(str, args.n_list)) or 'none'}")
    r = open_from_args(args)
    release_flow(r.objective, "privacy-report")
    train = load_run_split(r, "train", args.data_dir)
    test = load_run_split(r, "test", args.data_dir)
    val = load_run_split(r, "val", args.data_dir) if r.config.val_fraction > 0 else None
    if len({min(n, len(train)) for n in args.n_list}) < 2:
        raise UsageError(f"--n {','.join(map(str, args.n_list))}: the training split holds "
                         f"{len(train)} examples, which leaves fewer than two distinct sizes")
    if len(test) < 4:
        raise UsageError(f"the test split holds {len(test)} examples; the report needs at least 4")
    if getattr(r.objective, "conditional", False) and (train.y is None or test.y is None):
        raise UsageError("this run is conditional, and its data has no labels")
    independent = []
    for path in args.independent:
        other = open_run(path, args.checkpoint, resolve_device(args.device),
                         use_ema=not args.no_ema, warn=warn)
        _same_architecture(r, other, path)
        independent.append((str(path), other.objective))
    settings = ReportSettings(
        n_list=list(args.n_list), targets=args.targets, attack_steps=args.attack_steps,
        attack_batch=args.attack_batch, decoder_hidden=args.decoder_hidden, seeds=args.seeds,
        mia_n=args.mia_n, utility_train=args.utility_train, utility_test=args.utility_test,
        synthetic_n=args.synthetic_n, seed=args.seed,
        **({"sections": args.sections} if args.sections else {}))
    res, examples = measure(r.objective, r.config, r.data, train, test, settings, independent,
                            val=val,
                            log=lambda m: say(f"  {m}"))
    res["run"]["path"] = str(r.paths.root)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / NAMES[1], json.dumps(json_safe(res), indent=2, sort_keys=True))
    if res["holder"] is not None:
        save_report_figure(res, examples, out_dir / NAMES[2])
    else:
        (out_dir / NAMES[2]).unlink(missing_ok=True)  # not a figure of another measurement
    atomic_write_text(out_dir / NAMES[0], to_markdown(res, r.paths.root.name))
    if res["holder"] is not None:
        rows = leakage_rows(res)
        width = max(len(row[0]) for row in rows)
        kwidth = max(len(row[1]) for row in rows)
        say(f"{'attacker':<{width}}  {'knowledge':<{kwidth}}  {'PSNR dB':>8}  {'SSIM':>6}")
        for a, k, p, s in rows:
            say(f"{a:<{width}}  {k:<{kwidth}}  {p:>8}  {s:>6}")
    m = res["membership"]
    if m is not None:
        say(f"membership inference (likelihood threshold, {m['n']} training + {m['n']} "
            f"{m['nonmembers']} images): AUC "
            f"{m['auc']:.4f}, TPR at 1% FPR {100 * m['tpr_at_1pct_fpr']:.2f}%")
    for key, label, a, b in (("utility", "utility", "codes", "pixels"),
                             ("synthetic", "synthetic-data utility", "synthetic", "real")):
        if res[key] is not None:
            accs = ", ".join(f"{c}: {100 * res[key][a][c]:.2f}% on {a} vs "
                             f"{100 * res[key][b][c]:.2f}% on {b}" for c in res[key][a])
            say(f"{label}: {accs}")
    say(f"report: {out_dir / NAMES[0]} (also .json"
        + (", .png)" if res["holder"] is not None else ")"))
    return 0
