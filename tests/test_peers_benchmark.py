"""``benchmarks/peers.py --smoke``: every case for a few steps, ours and any installed peer."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
PEERS = ("nflows", "normflows", "zuko", "FrEIA")
INSTALLED = [p for p in PEERS if importlib.util.find_spec(p) is not None]


@pytest.fixture
def peers_main(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    for name in ("peers", "_peer_models", "_environment"):
        sys.modules.pop(name, None)
    import peers

    return peers.main


def _rows(out: Path) -> list[dict]:
    return json.loads((out / "peers.json").read_text())["rows"]


def test_smoke_runs_every_case_for_ours(peers_main, tmp_path, capsys):
    assert peers_main(["--smoke", "--libs", "ours", "--out-dir", str(tmp_path)]) == 0
    rows = _rows(tmp_path)
    density = {(r["data"], r["arch"]) for r in rows if r["case"] == "density"}
    assert len(density) == 9 and all("nll" in r for r in rows if r["case"] == "density")
    assert {r["arch"] for r in rows if r["case"] == "tabular"} == {
        "spline-ar", "spline-coupling", "affine-coupling"}
    layers = {r["arch"]: r for r in rows if r["case"] == "layers"}
    assert set(layers) == {"affine-coupling", "spline-coupling", "conv1x1", "circular-conv"}
    assert all(r["round_trip"] < 1e-3 and r["fwd_us"] > 0 for r in layers.values())
    images = [r for r in rows if r["case"] == "images"]
    if images:
        assert images[0]["bpd"] > 0
    else:
        assert "MNIST not found" in capsys.readouterr().out
    table = (tmp_path / "peers.md").read_text()
    assert "## 2-D densities" in table and "## Layer throughput" in table
    assert {r["lib"] for r in rows if r["case"] == "speed"} == {"ours"}
    assert "python benchmarks/peers.py --smoke" in table


@pytest.mark.skipif(not INSTALLED, reason='no peer library installed (pip install -e ".[bench]")')
def test_smoke_runs_every_installed_peer(peers_main, tmp_path):
    assert peers_main(["--smoke", "--cases", "density", "layers", "--out-dir",
                       str(tmp_path)]) == 0
    libs = {r["lib"] for r in _rows(tmp_path)}
    wanted = {"freia" if p == "FrEIA" else p for p in INSTALLED}
    assert wanted <= libs
    for r in _rows(tmp_path):
        assert "missing" in r or "nll" in r or "fwd_us" in r, r
