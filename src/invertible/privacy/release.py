"""Encoded-data release: images -> codes z = f(x) for an analyst, and back for the owner.

An invertible encoding is not encryption: whoever holds the model (its weights) inverts the
codes exactly; the weights are the key. A release file (``.npz``) holds, per split,
``codes_<split>`` float32 ``(N, D)`` (the flow's full latent at the bin centres, flattened),
``labels_<split>`` int64 ``(N,)`` and ``model_id``, a SHA-256 digest over the weights and the
config, so that decoding refuses codes made by another model.

Conditional runs (``train --conditional``) encode and decode given each example's label (the
one-hot context); the labels travel with the codes.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..core import apply_layer
from ..training.objectives.base import TaskError

__all__ = [
    "ReleaseError",
    "decode_codes",
    "decode_model_space",
    "encode_levels",
    "model_id",
    "read_release",
    "release_bytes",
    "release_flow",
]

_BATCH = 256


class ReleaseError(TaskError):
    """A release file or request that cannot be honoured (one-line message for the user)."""


def model_id(objective: torch.nn.Module, config: Any = None, data: dict | None = None) -> str:
    """SHA-256 hex digest over the weights (sorted state_dict names, dtypes, shapes and bytes)
    and the run's config and data record: two models share it only if they are the same."""
    h = hashlib.sha256()
    for name, t in sorted(objective.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{list(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    if config is not None:
        doc = config.to_dict() if hasattr(config, "to_dict") else config
        h.update(json.dumps(doc, sort_keys=True, default=str).encode())
    if data is not None:
        h.update(json.dumps(data, sort_keys=True, default=str).encode())
    return h.hexdigest()


def release_flow(objective: Any, command: str) -> Any:
    """The objective's flow, for an image run; conditional flows need a conditional
    density objective (its ``context``). Others get a one-line ``TaskError``."""
    flow = getattr(objective, "flow", None)
    if flow is None:
        raise TaskError(f"'{command}' needs a run whose model is a flow; this run's task is "
                        f"'{getattr(objective, 'task', '?')}'")
    if objective.kind != "image":
        raise TaskError(f"'{command}' needs an image run; this run models vectors")
    if flow.conditional and not getattr(objective, "conditional", False):
        raise TaskError(f"'{command}': this run's flow is conditional but its task gives no "
                        "class context")
    return flow


def _context(objective: Any, labels: Tensor | None) -> Tensor | None:
    if not getattr(objective, "conditional", False):
        return None
    if labels is None:
        raise ReleaseError("this run is conditional (train --conditional): encoding and "
                           "decoding need each example's class label")
    return objective.context(labels.to(objective.device))


@torch.no_grad()
def encode_levels(objective: Any, levels: Tensor, labels: Tensor | None = None,
                  batch_size: int = _BATCH) -> Tensor:
    """Integer levels ``(N, C, H, W)`` -> codes float32 ``(N, D)``: ``z = f(x)`` at the bin
    centres, given each label as context when the run is conditional."""
    bij = release_flow(objective, "encode").bijection
    out = []
    for s in range(0, len(levels), batch_size):
        x = objective.center(levels[s : s + batch_size].to(objective.device))
        y = labels[s : s + batch_size] if labels is not None else None
        z, _ = apply_layer(bij, x, _context(objective, y))
        out.append(z.reshape(len(x), -1).float().cpu())
    if not out:
        return torch.zeros(0, objective.dims)
    return torch.cat(out)


@torch.no_grad()
def decode_model_space(objective: Any, codes: Tensor, labels: Tensor | None = None,
                       batch_size: int = _BATCH) -> Tensor:
    """Codes ``(N, D)`` -> model-space images ``x = f^-1(z)`` ``(N, C, H, W)`` (float32, on the
    CPU, possibly non-finite for a model that is not the one that encoded them)."""
    bij = release_flow(objective, "decode").bijection
    shape = tuple(objective.shape)
    out = []
    for s in range(0, len(codes), batch_size):
        z = codes[s : s + batch_size].to(objective.device, objective.dtype)
        y = labels[s : s + batch_size] if labels is not None else None
        x, _ = apply_layer(bij, z.reshape(len(z), *shape), _context(objective, y), inverse=True)
        out.append(x.float().cpu())
    if not out:
        return torch.zeros(0, *shape)
    return torch.cat(out)


def decode_codes(objective: Any, codes: Tensor, labels: Tensor | None = None,
                 batch_size: int = _BATCH) -> Tensor:
    """Codes ``(N, D)`` -> integer levels ``(N, C, H, W)`` uint8 (floor of ``f^-1(z)``)."""
    return objective.to_levels(decode_model_space(objective, codes, labels, batch_size))


def release_bytes(mid: str, splits: dict[str, tuple[Tensor, Tensor | None]]) -> bytes:
    """The bytes of a release ``.npz``: ``{split: (codes (N, D), labels (N,) or None)}``."""
    arrays: dict[str, np.ndarray] = {"model_id": np.array(mid)}
    for name, (codes, labels) in splits.items():
        arrays[f"codes_{name}"] = codes.numpy().astype(np.float32)
        lab = labels.numpy() if labels is not None else np.full(len(codes), -1)
        arrays[f"labels_{name}"] = lab.astype(np.int64)
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def read_release(data: Any, split: str | None = None) -> tuple[str, str, np.ndarray, np.ndarray]:
    """A release file (path or bytes) -> ``(model_id, split, codes, labels)``.

    ``split`` None: the file's only split, else ``test`` when it has one."""
    try:
        with np.load(data, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError) as err:
        raise ReleaseError(f"cannot read {data} as a release .npz ({err})") from None
    if "model_id" not in arrays or arrays["model_id"].shape != ():
        raise ReleaseError(f"{data} is not a release file from 'invertible encode --data' "
                           "(no model_id)")
    names = sorted(k[len("codes_"):] for k in arrays if k.startswith("codes_"))
    if not names:
        raise ReleaseError(f"{data} holds no codes")
    if split is None:
        split = names[0] if len(names) == 1 else "test" if "test" in names else None
        if split is None:
            raise ReleaseError(f"{data} holds the splits {', '.join(names)}: choose one "
                               "with --split")
    if split not in names:
        raise ReleaseError(f"{data} holds no '{split}' codes (it has {', '.join(names)})")
    codes, labels = arrays[f"codes_{split}"], arrays.get(f"labels_{split}")
    if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.floating):
        raise ReleaseError(f"codes_{split} must be float (N, D), got {codes.dtype} "
                           f"{codes.shape}")
    if labels is None or labels.shape != (len(codes),) or not np.issubdtype(labels.dtype,
                                                                               np.integer):
        raise ReleaseError(f"labels_{split} must be integers (N,) beside codes_{split}")
    if not np.all(np.isfinite(codes)):
        raise ReleaseError(f"codes_{split} contain non-finite values")
    return str(arrays["model_id"]), split, codes, labels
