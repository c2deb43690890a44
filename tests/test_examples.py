"""Every script in examples/ runs, passes its own numeric assertions and writes a PNG."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.py"))


def test_there_are_examples():
    # the glob finds the scripts (an empty list would silently parametrize nothing below)
    names = {p.stem for p in EXAMPLES}
    assert names >= {"change_of_variables_1d", "linear_2d", "lognormal", "two_d_flows"}


def _run(script: Path, where: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(script), "--out", str(where / "out")],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=where,
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess[str], Path]]:
    """Every example run once, one thread each, as many at a time as there are cores (the
    scripts take 5-45 s apiece, one after another about 90 s). Larger scripts start first:
    roughly the longer runs, so that the two queues end close together."""
    where = {p.stem: tmp_path_factory.mktemp(p.stem) for p in EXAMPLES}
    larger_first = sorted(EXAMPLES, key=lambda p: p.stat().st_size, reverse=True)
    with ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1))) as pool:
        runs = {p.stem: pool.submit(_run, p, where[p.stem]) for p in larger_first}
        return {name: (run.result(), where[name] / "out") for name, run in runs.items()}


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_and_writes_a_png(script: Path, finished):
    proc, out = finished[script.stem]
    assert proc.returncode == 0, f"{script.name} failed:\n{proc.stdout}\n{proc.stderr}"
    pngs = list(out.glob("*.png"))
    assert pngs, f"{script.name} wrote no PNG into --out {out}"
    for png in pngs:  # complete, decodable images with something drawn on them
        with Image.open(png) as img:
            img.load()
            extrema = img.convert("L").getextrema()
        assert img.width >= 200 and img.height >= 150, (png.name, img.size)
        assert extrema[0] < extrema[1], f"{png.name} is a blank image"
    assert not list(out.glob("*.tmp")), "temporary files left behind"
