"""The metrics log ``RUN/metrics.jsonl``: one JSON object per line, appended as training goes."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

from .checkpoint import atomic_write_text

__all__ = ["MetricsLog", "read_metrics"]


def _clean(v: Any) -> Any:
    # JSON has no NaN/inf; write them as strings so that the log stays valid JSON.
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


class MetricsLog:
    """Appends records; ``enabled=False`` (non-zero ranks) makes every call a no-op."""

    def __init__(self, path: str | Path, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step`` (written after the checkpoint a resume starts from)."""
        if not self.enabled or not self.path.exists():
            return
        kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a metrics log, in file order.

    Lines that are not a JSON object are skipped with one ``UserWarning`` naming the file
    and the count. A torn last line (no final newline: a crash mid-write, which the next
    resume truncates away) is skipped silently, and so are blank lines.
    """
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    # The writer ends every record with a newline, so a last piece without one is torn.
    torn = lines.pop()
    out, bad = [], 0
    for line in lines:
        if not line.strip():
            continue
        rec = _parse(line)
        if rec is None:
            bad += 1
        else:
            out.append(rec)
    if torn.strip() and (rec := _parse(torn)) is not None:
        out.append(rec)  # complete except for the newline: keep it
    if bad:
        warnings.warn(f"{path}: {bad} malformed line{'s' * (bad != 1)} skipped", stacklevel=2)
    return out


def _parse(line: bytes) -> dict[str, Any] | None:
    """One record, or ``None`` for a line that is not a JSON object (invalid UTF-8 too)."""
    try:
        rec = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return rec if isinstance(rec, dict) else None
