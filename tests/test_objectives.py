"""Objectives are plug-ins: a task defined here trains on the unchanged loop and CLI."""

import inspect
import io
import json
import tokenize
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import invertible
from invertible.cli.main import main
from invertible.training import (
    DataSpec,
    Objective,
    TrainConfig,
    Trainer,
    register_objective,
    unregister_objective,
)
from invertible.training import loop as loop_module


class MeanPixel(Objective):
    """Predict each image's mean grey level from its top row (a toy regression task)."""

    task = "mean-pixel"
    monitor = "mse"

    def __init__(self, data: DataSpec, hidden: int = 8) -> None:
        super().__init__(data)
        c, _, w = data.shape
        self.net = nn.Sequential(nn.Linear(c * w, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def metric_names(self):
        return ["loss", "mse", "abs_error"]

    def forward(self, x, y=None):
        u = x.float() / (self.n_bins - 1)
        target = u.flatten(1).mean(1)
        pred = self.net(u[:, :, 0, :].flatten(1)).squeeze(1)
        err = pred - target
        return {"loss": err**2, "mse": err**2, "abs_error": err.abs()}

    def write_artifacts(self, folder: Path, name: str, n: int, preview=None):
        path = folder / "weights" / f"{name}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(str(float(self.net[0].weight.detach().abs().sum())))
        return [path]


@pytest.fixture
def mean_pixel_task():
    register_objective("mean-pixel",
                       lambda cfg, data: MeanPixel(data, **cfg.task_options), replace=True)
    yield
    unregister_objective("mean-pixel")


def test_the_loop_knows_nothing_about_likelihoods():
    # The names in the loop's code (not its prose) say nothing of flows or bits/dim.
    tokens = tokenize.generate_tokens(io.StringIO(inspect.getsource(loop_module)).readline)
    names = {t.string.lower() for t in tokens if t.type == tokenize.NAME}
    for word in ("bpd", "bits", "flow", "dequant", "log_prob", "likelihood", "n_bins"):
        assert not [n for n in names if word in n], f"the training loop names '{word}'"


def test_a_new_objective_trains_with_the_unchanged_loop(tmp_path):
    digits = invertible.load_split(TrainConfig(data="digits"), "train")
    val = invertible.load_split(TrainConfig(data="digits"), "val")
    objective = MeanPixel(DataSpec("image", digits.shape, digits.n_bins))
    before = objective.evaluate(val, 256)
    cfg = TrainConfig(steps=150, batch_size=32, lr=1e-2, warmup=0, val_every=50)
    summary = Trainer(cfg, objective, digits, val, tmp_path).fit()
    after = objective.evaluate(val, 256)
    assert summary.monitor == "mse" and summary.step == 150
    assert after["mse"] < 0.5 * before["mse"]
    assert after["n"] == len(val) == 144
    recs = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {"train_loss", "train_mse", "train_abs_error"} <= set().union(*recs)
    assert sum("val_mse" in r for r in recs) == 3  # steps 50, 100, 150 (not again at the end)
    assert summary.best_val == pytest.approx(min(r["val_mse"] for r in recs if "val_mse" in r))
    # Its pictures (here a text file) land in the run folder, with the final one.
    assert sorted(p.name for p in (tmp_path / "weights").iterdir()) == [
        "final.txt", "step_0000050.txt", "step_0000100.txt", "step_0000150.txt"]
    best = json.loads((tmp_path / "checkpoints" / "best.json").read_text())
    assert best["task"] == "mean-pixel" and "val_mse" in best


def test_a_registered_objective_works_through_the_cli(tmp_path, mean_pixel_task, capsys):
    run = tmp_path / "r"
    assert main(["train", "--task", "mean-pixel", "--task-option", "hidden=4", "--steps", "20",
                 "--batch-size", "32", "--val-every", "10", "--no-progress",
                 "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "for mean-pixel on digits" in out and "test mse:" in out
    cfg = json.loads((run / "config.json").read_text())["train"]
    assert cfg["task"] == "mean-pixel" and cfg["task_options"] == {"hidden": 4}
    w = load_file(str(run / "checkpoints" / "latest.safetensors"))
    assert w["model.net.0.weight"].shape == (4, 8)  # the task option reached the objective
    assert main(["evaluate", str(run), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["task"] == "mean-pixel" and figures["n"] == 359
    # Tasks without generation or a flow say so in one line.
    assert main(["sample", str(run), "-o", str(tmp_path / "s.png")]) == 2
    assert "cannot generate samples" in capsys.readouterr().err
    assert main(["encode", str(run), "--split", "test", "-o", str(tmp_path / "z.npy")]) == 2
    assert "task is 'mean-pixel'" in capsys.readouterr().err
    # Resuming rebuilds the task from the config and continues.
    assert main(["train", "--resume", str(run), "--steps", "30", "--no-progress"]) == 0
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["step"] == 30


def test_validation_can_be_turned_off(tmp_path):
    run = tmp_path / "r"
    assert main(["train", "--model", "elementwise", "--steps", "10", "--batch-size", "32",
                 "--val-every", "0", "--no-progress", "--out", str(run)]) == 0
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert not any(k.startswith("val_") for r in recs for k in r)
    assert any(r.get("event") == "test" for r in recs)
    best = load_file(str(run / "checkpoints" / "best.safetensors"))
    latest = load_file(str(run / "checkpoints" / "latest.safetensors"))
    assert all(torch.equal(best[k], latest[k]) for k in latest if k.startswith("model."))
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["final.png"]


def test_picture_history_is_bounded(tmp_path):
    run = tmp_path / "r"
    assert main(["train", "--model", "elementwise", "--steps", "24", "--batch-size", "32",
                 "--val-every", "0", "--sample-every", "2", "--no-progress",
                 "--out", str(run)]) == 0
    names = sorted(p.name for p in (run / "samples").iterdir())
    assert names == ["final.png"] + [f"step_{s:07d}.png" for s in range(6, 25, 2)]


def test_a_run_started_from_python_opens_like_a_cli_run(tmp_path):
    cfg = TrainConfig(model="elementwise", steps=10, batch_size=32, val_every=5)
    train = invertible.load_split(cfg, "train")
    objective = invertible.build_objective(cfg, train.info())
    Trainer(cfg, objective, train, invertible.load_split(cfg, "val"), tmp_path).fit()
    run = invertible.open_run(tmp_path, "latest")
    assert run.config.task == "density" and run.meta["step"] == 10
    test = invertible.load_split(cfg, "test")
    assert run.objective.evaluate(test, 256)["bpd"] == pytest.approx(
        objective.eval().evaluate(test, 256)["bpd"], rel=1e-12)
    assert main(["evaluate", str(tmp_path)]) == 0
