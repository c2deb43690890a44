"""Two CPU processes on loopback (gloo): identical replicas and EMA, falling loss, one writer."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

WORKER = Path(__file__).with_name("ddp_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(tmp_path, *train_args):
    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable),
                                                         "torchrun")
    dump, run = tmp_path / "dump", tmp_path / "run"
    dump.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [torchrun, "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", str(WORKER), str(dump), "train", *train_args,
           "--out", str(run), "--no-progress"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    w0 = load_file(str(dump / "rank0.safetensors"))
    w1 = load_file(str(dump / "rank1.safetensors"))
    return r, run, w0, w1


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_two_process_ddp_iconvnet_with_ema(tmp_path):
    r, run, w0, w1 = _torchrun(tmp_path, "--model", "iconvnet", "--steps", "30",
                               "--batch-size", "32", "--ema", "0.9", "--warmup", "0",
                               "--log-every", "5", "--val-every", "15")
    assert r.stdout.count("test bits/dim:") == 1  # only rank 0 speaks
    assert sorted(w0) == sorted(w1) and any(k.startswith("ema.") for k in w0)
    # Both the weights and their averages are the same on both ranks, bit for bit: the EMA
    # starts from the broadcast weights, not from each rank's own data-dependent init.
    different = [k for k in w0 if not torch.equal(w0[k], w1[k])]
    assert not different, different[:5]
    saved = load_file(str(run / "checkpoints" / "latest.safetensors"))
    assert all(torch.equal(saved[k], w0[k]) for k in w0)
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    start = next(r for r in recs if r.get("event") == "start")
    assert start["world_size"] == 2 and start["global_batch"] == 64
    bpd = [r["train_bpd"] for r in recs if "train_bpd" in r]
    assert len(bpd) == 6 and bpd[-1] < bpd[0] - 0.05
