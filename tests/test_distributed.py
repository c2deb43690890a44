"""Two CPU processes on loopback (gloo): identical replicas, falling loss, one writer."""

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_two_process_ddp(tmp_path):
    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable),
                                                         "torchrun")
    dump, run = tmp_path / "dump", tmp_path / "run"
    dump.mkdir()
    env = {**os.environ, "INVERTIBLE_DEBUG_DUMP_DIR": str(dump), "OMP_NUM_THREADS": "1"}
    cmd = [torchrun, "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", "-m", "invertible", "train",
           "--model", "elementwise", "--steps", "40", "--batch-size", "32", "--lr", "0.01",
           "--warmup", "0", "--log-every", "5", "--out", str(run), "--no-progress"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True,
                       timeout=120, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("test bits/dim:") == 1  # only rank 0 speaks
    w0 = load_file(str(dump / "rank0.safetensors"))
    w1 = load_file(str(dump / "rank1.safetensors"))
    assert sorted(w0) == sorted(w1)
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    saved = load_file(str(run / "checkpoints" / "latest.safetensors"))
    assert all(torch.equal(saved[f"model.{k}"], w0[k]) for k in w0)
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    start = next(r for r in recs if r.get("event") == "start")
    assert start["world_size"] == 2 and start["global_batch"] == 64
    bpd = [r["train_bpd"] for r in recs if "train_bpd" in r]
    assert len(bpd) >= 4 and bpd[-1] < bpd[0] - 0.05
