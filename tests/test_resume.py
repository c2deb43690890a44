"""A training process killed by a real signal, then resumed, ends with the uninterrupted weights.

Each run is its own process with one thread, so that the uninterrupted and the resumed run
do the same floating-point operations. SIGKILL leaves only the last periodic checkpoint;
SIGINT/SIGTERM save the latest one on the way out.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

from invertible.cli.main import main

MODELS = {
    "glow": ["--model", "glow", "--model-option", "levels=1", "--model-option", "depth=2",
             "--model-option", "hidden=16"],
    "iconvnet": ["--model", "iconvnet"],
    # DP-SGD: Poisson batches by step and the noise from the checkpointed RNG.
    "glow-dp": ["--model", "glow", "--model-option", "levels=1", "--model-option", "depth=2",
                "--model-option", "hidden=16", "--dp-epsilon", "8"],
}
# 40 steps an epoch on the digits at batch 32: checkpoints at 15, 30, 45 ... fall mid-epoch.
# The sample-quality score at the end of a run is not what these tests are about.
COMMON = ["--steps", "100", "--batch-size", "32", "--warmup", "5", "--ema", "0.9",
          "--val-every", "15", "--sample-every", "0", "--no-progress", "--seed", "3",
          "--no-sample-score"]


def _train(*argv: str, wait: bool = True) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen([sys.executable, "-m", "invertible", "train", *argv], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if wait:
        _finish(p)
    return p


def _finish(p: subprocess.Popen) -> None:
    _out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-2000:]


def _checkpoint_step(run) -> int:
    try:
        return json.loads((run / "checkpoints" / "latest.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        return -1


def _kill_after_checkpoint(run, argv, sig, min_step=30) -> int:
    """Start training, wait for a checkpoint at ``min_step`` or later, then send ``sig``."""
    p = _train(*argv, "--out", str(run), wait=False)
    deadline = time.monotonic() + 240
    while _checkpoint_step(run) < min_step:
        assert p.poll() is None, f"training ended before the signal: {p.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.01)
    p.send_signal(sig)
    _, _err = p.communicate(timeout=120)
    assert _checkpoint_step(run) < 100, "the run finished before the signal reached it"
    return p.returncode


@pytest.mark.parametrize(("model", "sig"), [("glow", signal.SIGKILL),
                                            ("iconvnet", signal.SIGINT),
                                            ("glow", signal.SIGTERM),
                                            ("glow-dp", signal.SIGKILL)])
def test_killed_and_resumed_run_matches_the_uninterrupted_one(tmp_path, model, sig):
    argv = [*MODELS[model], *COMMON]
    full, split = tmp_path / "full", tmp_path / "split"
    # The uninterrupted run goes on beside the killed one and its resumption (one thread each).
    uninterrupted = _train(*argv, "--out", str(full), wait=False)
    try:
        rc = _kill_after_checkpoint(split, argv, sig)
        # SIGKILL cannot be caught; SIGINT and SIGTERM stop cleanly with 130.
        assert rc == (-signal.SIGKILL if sig == signal.SIGKILL else 130)
        mid = load_file(str(split / "checkpoints" / "latest.safetensors"))
        _train("--resume", str(split), "--no-progress", "--no-sample-score")
        _finish(uninterrupted)
    finally:  # a failed check above leaves no training process behind
        if uninterrupted.poll() is None:
            uninterrupted.kill()
            uninterrupted.communicate()
    a = load_file(str(full / "checkpoints" / "latest.safetensors"))
    b = load_file(str(split / "checkpoints" / "latest.safetensors"))
    assert sorted(a) == sorted(b)
    weights = [k for k in a if k.startswith(("model.", "ema.")) and a[k].is_floating_point()]
    worst = max(float((a[k].double() - b[k].double()).abs().max()) for k in weights)
    assert worst <= 1e-6, f"resumed weights differ from the uninterrupted run by {worst:.2e}"
    # The second half really trained: the weights moved after the interruption.
    moved = max(float((mid[k].double() - b[k].double()).abs().max()) for k in weights)
    assert moved > 1e-3
    # The metrics log holds each step once (records past the checkpoint are dropped).
    recs = [json.loads(line) for line in (split / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in recs if "train_bpd" in r]
    assert steps == sorted(set(steps)) and steps[-1] == 100


def test_resume_refuses_changing_the_run(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", "--model", "elementwise", "--steps", "2", "--batch-size", "32",
                 "--no-progress", "--out", str(run)]) == 0
    assert main(["train", "--resume", str(run), "--lr", "0.1"]) == 2
    assert "--lr cannot change when resuming" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--task-option", "a=1"]) == 2
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    # A longer budget is allowed, and continues from the saved step.
    assert main(["train", "--resume", str(run), "--steps", "4", "--no-progress"]) == 0
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["step"] == 4
