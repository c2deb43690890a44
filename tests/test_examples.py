"""Every script in examples/ runs, passes its own numeric assertions and writes a PNG."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.py"))


def test_there_are_examples():
    assert len(EXAMPLES) >= 3


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
    assert all(p.stat().st_size > 1000 for p in pngs)
    assert not list(out.glob("*.tmp")), "temporary files left behind"
