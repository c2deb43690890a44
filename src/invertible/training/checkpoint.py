"""Checkpoints as safetensors (all tensors) plus a JSON side file (everything else).

``save_checkpoint(stem, tensors, meta)`` writes ``stem.safetensors`` and ``stem.json``
atomically; ``load_checkpoint(stem)`` reads them back without executing any code (no
pickle), checks the tensor file against the sha256 recorded in the JSON (format 2) and
that the two halves belong together. Helpers flatten optimizer and RNG states into
tensors + JSON so that a resumed run continues bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor

__all__ = [
    "CheckpointError",
    "atomic_write_bytes",
    "atomic_write_text",
    "capture_rng",
    "flatten_optimizer",
    "load_checkpoint",
    "prefixed",
    "restore_rng",
    "save_checkpoint",
    "strip_prefix",
    "unflatten_optimizer",
]

# Format 2 added the sha256 of the .safetensors file to the JSON; format 1 files are
# refused (they cannot be checked, and no release wrote them).
_FAMILY = "invertible-checkpoint-"
FORMAT = _FAMILY + "2"


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated, mismatched or not ours (one-line message)."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def prefixed(prefix: str, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    return {f"{prefix}.{k}": v for k, v in tensors.items()}


def strip_prefix(prefix: str, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    p = prefix + "."
    return {k[len(p) :]: v for k, v in tensors.items() if k.startswith(p)}


def save_checkpoint(stem: str | os.PathLike, tensors: dict[str, Tensor], meta: dict) -> None:
    """Write ``stem.safetensors`` (tensors) then ``stem.json`` (meta), each atomically."""
    stem = Path(stem)
    tag = f"{meta.get('step', 0)}:{os.urandom(8).hex()}"
    # safetensors refuses shared or strided storage: give it private contiguous copies.
    clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    data = st_save(clean, {"tag": tag})
    atomic_write_bytes(stem.with_suffix(".safetensors"), data)
    doc = {"format": FORMAT, "tag": tag, "sha256": hashlib.sha256(data).hexdigest(), **meta}
    atomic_write_text(stem.with_suffix(".json"), json.dumps(doc, indent=1, sort_keys=True))


def _tag(raw: bytes) -> str | None:
    """The save tag in the header of safetensors bytes (``None`` where it does not parse)."""
    try:
        header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
        tag = header["__metadata__"]["tag"]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        return None
    return tag if isinstance(tag, str) else None


def load_checkpoint(stem: str | os.PathLike) -> tuple[dict[str, Tensor], dict]:
    """Read a checkpoint written by ``save_checkpoint``; raises ``CheckpointError``."""
    stem = Path(stem)
    wpath, jpath = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    for p in (wpath, jpath):
        if not p.is_file():
            raise CheckpointError(f"checkpoint file {p} is missing")
    try:
        meta = json.loads(jpath.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint file {jpath} is not valid JSON ({e})") from e
    fmt = meta.get("format") if isinstance(meta, dict) else None
    if not isinstance(fmt, str) or not fmt.startswith(_FAMILY):
        raise CheckpointError(f"{jpath} is not an invertible checkpoint")
    if fmt != FORMAT:
        raise CheckpointError(
            f"checkpoint {jpath} has format {fmt!r}; this version reads {FORMAT!r} only "
            "(older checkpoints carry no checksum: retrain, or use the version that wrote it)"
        )
    try:
        raw = wpath.read_bytes()
    except OSError as e:
        raise CheckpointError(f"checkpoint file {wpath} is unreadable ({e})") from e
    # Checked before parsing: a flipped bit in the tensor data parses fine and would load
    # silently wrong weights. A match also proves that the halves belong together.
    if hashlib.sha256(raw).hexdigest() != meta.get("sha256"):
        tag = _tag(raw)
        if tag is not None and tag != meta.get("tag"):
            # An intact file from another save (one half of the pair overwritten).
            raise CheckpointError(f"{wpath} and {jpath} do not belong to the same save")
        raise CheckpointError(
            f"checkpoint file {wpath} is corrupt: its sha256 does not match the one recorded "
            f"in {jpath}"
        )
    try:
        tensors = st_load(raw)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint file {wpath} is corrupt ({e})") from e
    return tensors, meta


# -- optimizer -----------------------------------------------------------------------------
def flatten_optimizer(state_dict: dict) -> tuple[dict[str, Tensor], dict]:
    """Split ``optimizer.state_dict()`` into tensors ``{"<param>.<key>": t}`` and JSON."""
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in state_dict["state"].items():
        for key, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for name, t in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = t
    for idx, entry in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(entry)
    return {"state": state, "param_groups": meta["param_groups"]}


# -- random number generators ----------------------------------------------------------------
def capture_rng() -> tuple[dict[str, Tensor], dict]:
    """The states of torch (CPU and CUDA), numpy and Python's ``random``."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["cuda"] = torch.cuda.get_rng_state()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, py_state, gauss_next = random.getstate()
    tensors["python"] = torch.tensor(py_state, dtype=torch.int64)
    meta = {
        "numpy": [kind, int(pos), int(has_gauss), float(cached)],
        "python": [version, gauss_next],
    }
    return tensors, meta


def restore_rng(tensors: dict[str, Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["torch"])
    if "cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["cuda"])
    kind, pos, has_gauss, cached = meta["numpy"]
    keys = tensors["numpy"].numpy().astype(np.uint32)
    np.random.set_state((kind, keys, pos, has_gauss, cached))
    version, gauss_next = meta["python"]
    random.setstate((version, tuple(int(v) for v in tensors["python"].tolist()), gauss_next))
