"""An interrupted run, resumed, ends with bit-identical weights to an uninterrupted one."""

import torch
from safetensors.torch import load_file

from invertible.cli.main import main

ARGS = ["--model", "elementwise", "--steps", "12", "--batch-size", "32", "--warmup", "3",
        "--ema", "0.9", "--val-every", "5", "--no-progress", "--seed", "3"]


def _weights(run):
    return load_file(str(run / "checkpoints" / "latest.safetensors"))


def test_resume_is_bit_identical(tmp_path):
    full, split = tmp_path / "full", tmp_path / "split"
    assert main(["train", *ARGS, "--out", str(full)]) == 0
    assert main(["train", *ARGS, "--out", str(split), "--stop-at-step", "7"]) == 0
    mid = _weights(split)
    assert main(["train", "--resume", str(split), "--no-progress"]) == 0
    a, b = _weights(full), _weights(split)
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    # The second half really trained: weights moved after the interruption.
    assert not torch.equal(mid["model.flow.bijection.layers.1.shift"],
                           b["model.flow.bijection.layers.1.shift"])
    # The metrics log holds each step once (records past the checkpoint are dropped).
    lines = (split / "metrics.jsonl").read_text().splitlines()
    steps = [int(line.split('"step": ')[1].split(",")[0].rstrip("}")) for line in lines
             if '"train_bpd"' in line]
    assert steps == sorted(set(steps))


def test_resume_refuses_changing_the_run(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", *ARGS, "--out", str(run), "--stop-at-step", "2"]) == 0
    assert main(["train", "--resume", str(run), "--lr", "0.1"]) == 2
    assert "--lr cannot change when resuming" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2
