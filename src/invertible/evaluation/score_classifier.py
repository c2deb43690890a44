"""The classifier behind the sample-quality score: a small CNN trained on a run's real
training split, cached as a checksummed safetensors checkpoint next to the run and in the
user's cache (one per training split, so later runs on the same data reuse it).

``train_score_classifier`` is deterministic (seeded, a fixed step budget) and measures the
classifier's accuracy on the real test split; ``load_or_train_classifier`` reads the cache
when it is sound and matches the data, else trains and writes it (atomically).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ..training.datasets import Split
from ..training.objectives.base import fixed_rng

__all__ = [
    "CACHE_NAME",
    "SCORE_FORMAT",
    "ScoreClassifier",
    "TrainedClassifier",
    "cache_stem",
    "load_or_train_classifier",
    "shared_stem",
    "to_unit",
    "train_score_classifier",
]

#: Bumped when the network or its training recipe changes: older caches are retrained.
SCORE_FORMAT = 1
#: The cache's file stem in a run folder (``.safetensors`` plus its ``.json`` side file).
CACHE_NAME = "score_classifier"

# The budget: at most this many steps and epochs. On MNIST (54,000 images) the steps bind
# (about 1.2 epochs: 98.6% test accuracy, ~30 s on one thread); on the digits (1,294
# images) the epochs do (420 steps: 98.3%, ~2 s).
_STEPS, _EPOCHS, _BATCH, _LR = 1000, 20, 64, 3e-3
_WIDTH = 16
# Outlier exposure (Hendrycks et al., 2019): each step also shows _NOISE images of uniform
# random levels, pulled towards the uniform class distribution with weight _OE. Without it
# the network is nearly as confident on noise as on digits (on the digits, uniform noise
# scored IS 4.4 and mean max prob 0.77; with it, 1.02 and 0.13), so the score could not
# tell noise from digits.
_NOISE, _OE = 32, 0.5


def to_unit(levels: Tensor, n_bins: int) -> Tensor:
    """Integer levels ``(B, C, H, W)`` in ``0..n_bins - 1`` -> float32 in [0, 1], as
    ``level / (n_bins - 1)``: real images and samples (both levels) on one scale."""
    x = levels.float() / max(n_bins - 1, 1)
    return x.nan_to_num(0.0).clamp_(0.0, 1.0)


class ScoreClassifier(nn.Module):
    """Two 3x3 convolutions (the first of stride 2), then two linear layers; no
    normalisation or dropout layers, so train and eval mode compute the same function.

    ``forward``: images ``(B, C, H, W)`` in [0, 1] -> logits ``(B, n_classes)``. Any image
    size of at least 2x2: the strided convolution halves it (digits 8 -> 4, MNIST 28 -> 14);
    images of 16 pixels or more are also max-pooled (MNIST 14 -> 7), and anything larger
    than 8x8 then is averaged down to 8x8.
    """

    def __init__(self, shape: tuple[int, ...], n_classes: int, width: int = _WIDTH) -> None:
        super().__init__()
        if len(shape) != 3 or min(shape[1:]) < 2 or n_classes < 2:
            raise ValueError(f"a score classifier needs images of at least 2x2 and 2 classes, "
                             f"got shape {shape} and {n_classes} classes")
        c, h, w = shape
        self.shape = (int(c), int(h), int(w))
        self.n_classes = int(n_classes)
        # A strided first convolution rather than convolution + pooling: a third faster.
        self.conv1 = nn.Conv2d(c, width, 3, padding=1, stride=2)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.pool_twice = min(h, w) // 2 >= 8
        h2, w2 = (h + 1) // 2, (w + 1) // 2  # after the strided convolution
        if self.pool_twice:
            h2, w2 = h2 // 2, w2 // 2
        self.grid = (min(h2, 8), min(w2, 8))
        self.hidden = nn.Linear(2 * width * self.grid[0] * self.grid[1], 4 * width)
        self.out = nn.Linear(4 * width, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.conv2(F.relu(self.conv1(x))))
        if self.pool_twice:
            h = F.max_pool2d(h, 2)
        if tuple(h.shape[-2:]) != self.grid:
            h = F.adaptive_avg_pool2d(h, self.grid)
        h = h.flatten(1)
        return self.out(F.relu(self.hidden(h)))

    @torch.no_grad()
    def probabilities(self, x: Tensor, batch_size: int = 500) -> Tensor:
        """Class probabilities ``(N, n_classes)`` (float64, CPU) of images ``(N, C, H, W)``
        in [0, 1], in eval mode and in batches."""
        was = self.training
        self.eval()
        device = next(self.parameters()).device
        try:
            parts = [torch.softmax(self(x[s : s + batch_size].to(device)).double(), 1).cpu()
                     for s in range(0, len(x), batch_size)]
        finally:
            self.train(was)
        return torch.cat(parts) if parts else torch.zeros(0, self.n_classes, dtype=torch.float64)


@dataclass(frozen=True)
class TrainedClassifier:
    """A score classifier and where it came from: its ``test_accuracy`` on the real test
    split (a fraction), the cache file it lives in (None: not cached) and whether it was
    ``loaded`` from that cache rather than trained now."""

    model: ScoreClassifier
    test_accuracy: float
    path: Path | None
    loaded: bool


def _labelled(split: Split, what: str) -> Tensor:
    if split.kind != "image" or split.n_bins is None:
        raise ValueError(f"the sample score needs image data; the {what} split holds vectors")
    if split.y is None:
        raise ValueError(f"the sample score needs class labels; the {what} split has none")
    return split.y


def _data_record(train: Split, n_classes: int) -> dict:
    """What the cache must match: the dataset, its image shape, classes and levels, and the
    sha256 of the training images and labels (another split trains another classifier)."""
    y = _labelled(train, "train")
    digest = hashlib.sha256(train.x.contiguous().numpy().tobytes())
    digest.update(y.to(torch.int64).contiguous().numpy().tobytes())
    return {"dataset": train.name, "shape": list(train.shape), "n_classes": n_classes,
            "n_bins": train.n_bins, "train_sha256": digest.hexdigest()}


def _n_classes(train: Split, test: Split) -> int:
    return max(train.n_classes or 0, test.n_classes or 0)


def _accuracy(model: ScoreClassifier, split: Split) -> float:
    """The fraction of ``split`` classified right (NaN when it is empty)."""
    y = _labelled(split, "test")
    if not len(split):
        return math.nan
    assert split.n_bins is not None
    probs = model.probabilities(to_unit(split.x, split.n_bins))
    return float((probs.argmax(1) == y).double().mean())


def train_score_classifier(train: Split, test: Split, seed: int = 0,
                           device: str | torch.device = "cpu") -> tuple[ScoreClassifier, float]:
    """Train a ``ScoreClassifier`` on the labelled image split ``train`` (levels, scaled by
    ``to_unit``) with Adam for a fixed budget (at most 1,000 steps of 64 images, and 20
    epochs), plus 32 uniform-noise images per step taught to predict no class. Seeded by
    ``seed`` without touching the global RNG: the same data and seed give the same weights
    on one machine. Returns the model (eval mode) and its accuracy (a fraction) on ``test``.
    About 2 s on the digits and 30 s on MNIST (one CPU thread).
    """
    y = _labelled(train, "train")
    _labelled(test, "test")
    assert train.n_bins is not None
    device = torch.device(device)
    n_classes = _n_classes(train, test)
    n = len(train)
    if n == 0:
        raise ValueError("the sample score needs a non-empty training split")
    steps = min(_STEPS, _EPOCHS * math.ceil(n / _BATCH))
    with fixed_rng(seed, device):
        model = ScoreClassifier(train.shape, n_classes).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=_LR)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, _LR, total_steps=steps)
        gen = torch.Generator().manual_seed(seed)
        order = torch.randperm(n, generator=gen)
        pos = 0
        model.train()
        for _ in range(steps):
            if pos + _BATCH > n:
                order, pos = torch.randperm(n, generator=gen), 0
            idx = order[pos : pos + _BATCH]
            pos += _BATCH
            x = to_unit(train.x[idx], train.n_bins).to(device)
            noise = torch.randint(0, train.n_bins, (_NOISE, *train.shape), generator=gen)
            logits = model(torch.cat([x, to_unit(noise, train.n_bins).to(device)]))
            real, fake = logits[: len(idx)], logits[len(idx) :]
            # Outlier exposure: cross-entropy to the uniform distribution on noise.
            loss = F.cross_entropy(real, y[idx].to(device)) \
                - _OE * torch.log_softmax(fake, 1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    return model, _accuracy(model, test)


def cache_stem(run_root: str | os.PathLike) -> Path | None:
    """Where a run's own copy of the score classifier goes: ``RUN/score_classifier``, or
    None when the run folder is not writable (then the user cache alone holds it, see
    ``shared_stem``)."""
    root = Path(run_root)
    return root / CACHE_NAME if os.access(root, os.W_OK) else None


def _load(stem: Path, record: dict) -> tuple[ScoreClassifier, dict]:
    """The cached classifier at ``stem`` and the metadata to save with it; ``CheckpointError``
    (one line) when it is corrupt, from another format or trained on other data."""
    tensors, meta = load_checkpoint(stem)
    if meta.get("score_format") != SCORE_FORMAT:
        raise CheckpointError(f"{stem}.json is not a score classifier of format {SCORE_FORMAT}")
    theirs = {k: meta.get(k) for k in record}
    if theirs != record:
        diff = ", ".join(f"{k} {theirs[k]!r} (the run's: {record[k]!r})"
                         for k in record if theirs[k] != record[k] and k != "train_sha256")
        raise CheckpointError(f"{stem}.safetensors was trained on other data"
                              + (f": {diff}" if diff else " (another training split)"))
    model = ScoreClassifier(tuple(record["shape"]), record["n_classes"])
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{stem}.safetensors does not match the classifier ({first})") \
            from e
    accuracy = meta.get("test_accuracy")
    if not isinstance(accuracy, int | float):
        raise CheckpointError(f"{stem}.json records no test accuracy")
    # Our own fields only: the file's checksum and save tag belong to that file.
    return model.eval(), _meta(record, float(accuracy), meta.get("seed"))


def _meta(record: dict, accuracy: float, seed: object) -> dict:
    return {"score_format": SCORE_FORMAT, **record, "test_accuracy": accuracy, "seed": seed}


def shared_stem(train: Split, test: Split) -> Path:
    """The user-cache copy of the classifier for one training split, shared by every run
    on it: ``default_root("score-classifiers")/data-<digest>/score_classifier``, the digest
    covering the dataset, shapes, classes, levels and the images' sha256."""
    return _shared_stem(_data_record(train, _n_classes(train, test)))


def _shared_stem(record: dict) -> Path:
    from ..data import default_root

    key = hashlib.sha256(json.dumps(record, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    return default_root("score-classifiers") / f"data-{key}" / CACHE_NAME


def load_or_train_classifier(stem: str | os.PathLike | None, train: Split, test: Split,
                             seed: int = 0, device: str | torch.device = "cpu",
                             warn: Callable[[str], None] | None = None) -> TrainedClassifier:
    """The score classifier cached at ``stem`` (``stem.safetensors`` + ``stem.json``, see
    ``save_checkpoint``), else the user cache's copy for this training split
    (``shared_stem``, then also written to ``stem``), else a new one from
    ``train_score_classifier`` written to both atomically. ``stem=None``: the user cache
    only. A cache that is corrupt or was trained on other data is rejected and reported in
    one line through ``warn``; one that cannot be written only costs the retraining next
    time (also reported, for ``stem``).
    """
    own = None if stem is None else Path(stem)
    record = _data_record(train, _n_classes(train, test))
    shared = _shared_stem(record)
    for where in dict.fromkeys(p for p in (own, shared) if p is not None):
        if not (where.with_suffix(".safetensors").exists() or where.with_suffix(".json").exists()):
            continue
        try:
            model, meta = _load(where, record)
        except CheckpointError as e:
            if warn is not None:
                warn(f"score classifier cache rejected ({e})")
            continue
        kept = where if own is None or where == own else _store(own, model, meta, warn) or where
        return TrainedClassifier(model.to(device), float(meta["test_accuracy"]),
                                 _weights_path(kept), loaded=True)
    model, accuracy = train_score_classifier(train, test, seed, device)
    meta = _meta(record, accuracy, seed)
    saved = _store(shared, model, meta, warn if own is None else None)
    if own is not None and own != shared:
        saved = _store(own, model, meta, warn)
    return TrainedClassifier(model, accuracy, _weights_path(saved), loaded=False)


def _weights_path(stem: Path | None) -> Path | None:
    return None if stem is None else stem.with_suffix(".safetensors")


def _store(stem: Path, model: ScoreClassifier, meta: dict,
           warn: Callable[[str], None] | None) -> Path | None:
    """Write the classifier to ``stem`` atomically; its stem, or None (reported) on failure."""
    try:
        stem.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(stem, dict(model.state_dict()), meta)
    except OSError as e:
        if warn is not None:
            warn(f"cannot cache the score classifier at {stem}.safetensors ({e})")
        return None
    return stem
