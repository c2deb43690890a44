"""Shared benchmark helpers: machine description, interleaved median timing, atomic writes."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch


def describe_machine() -> str:
    model = platform.processor() or "unknown"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return (
        f"CPU: {model}, {os.cpu_count()} logical cores; torch {torch.__version__}, "
        f"{torch.get_num_threads()} intra-op thread(s); Python {platform.python_version()}; "
        f"load average at start {os.getloadavg()[0]:.2f}"
    )


def interleaved_medians(
    fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1
) -> dict[str, float]:
    """Median seconds per function; the functions take turns so that machine noise hits
    all of them alike, which keeps their ratios meaningful on a shared machine."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def spread(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median, (max - min) / median) of ``repeats`` timings: a noise indicator."""
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    med = statistics.median(ts)
    return med, (max(ts) - min(ts)) / med


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
