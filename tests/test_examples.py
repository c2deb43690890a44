"""Every script in examples/ runs, passes its own numeric assertions and writes a PNG."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.py"))


def test_there_are_examples():
    # the glob finds the scripts (an empty list would silently parametrize nothing below)
    names = {p.stem for p in EXAMPLES}
    assert names >= {"change_of_variables_1d", "linear_2d", "lognormal", "two_d_flows"}


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_and_writes_a_png(script: Path, tmp_path: Path):
    out = tmp_path / "out"
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(script), "--out", str(out)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
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
