"""The trainer: non-finite guard, schedule, data-dependent init, registry and data adapter."""

import json
import math

import pytest
import torch

from invertible.cli.main import main
from invertible.core import Bijection, Sequential
from invertible.distributions import Flow, StandardNormal
from invertible.models.registry import (
    MODELS,
    ModelError,
    ModelSpec,
    build_elementwise,
    build_model,
    register_model,
)
from invertible.training import DataSpec, DensityObjective, Split, Trainer
from invertible.training.config import ConfigError, TrainConfig


class _NaNOnCalls(Bijection):
    """Identity that poisons the log-det on chosen training-mode calls (fault injection)."""

    def __init__(self, bad_calls):
        super().__init__()
        self.bad = set(bad_calls)
        self.calls = 0

    def forward(self, x):
        self._check(x, [("B", "...")])
        ld = self._zeros(x)
        if self.training:
            self.calls += 1
            if self.calls in self.bad:
                ld = ld + float("nan")
        return x, ld

    def inverse(self, z):
        return z, self._zeros(z)


def _nan_model(shape, bad="2,3,4"):
    base = build_elementwise(shape, image=True)
    # Call 1 is the data-dependent init pass; training steps are calls 2, 3, ...
    poison = _NaNOnCalls(int(c) for c in bad.split(","))
    return Flow(Sequential(poison, base.bijection), StandardNormal(shape))


@pytest.fixture
def nan_model():
    register_model(ModelSpec("test-nan", _nan_model, frozenset({"image"}), "test"), replace=True)
    yield
    MODELS.pop("test-nan", None)


def test_nonfinite_steps_are_skipped_logged_and_lower_the_lr(tmp_path, nan_model, capsys):
    run = tmp_path / "r"
    rc = main(["train", "--model", "test-nan", "--steps", "8", "--batch-size", "32",
               "--warmup", "0", "--schedule", "constant", "--out", str(run), "--no-progress"])
    assert rc == 0
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    events = [r for r in recs if r.get("event") == "nonfinite"]
    assert [e["step"] for e in events] == [0, 1, 2]
    assert events[-1]["lr_scale"] == 0.5  # third event in a row: learning rate halved
    lrs = [r["lr"] for r in recs if "lr" in r]
    assert lrs[-1] == pytest.approx(0.5e-3)
    assert "non-finite loss or gradient at step 0" in capsys.readouterr().err
    from safetensors.torch import load_file

    w = load_file(str(run / "checkpoints" / "latest.safetensors"))
    assert all(torch.isfinite(v).all() for k, v in w.items() if v.is_floating_point())


def test_check_every_n_steps_keeps_weights_finite_without_a_read_per_step(tmp_path,
                                                                         nan_model):
    run = tmp_path / "r"
    assert main(["train", "--model", "test-nan", "--steps", "8", "--batch-size", "32",
                 "--warmup", "0", "--schedule", "constant", "--check-every", "4",
                 "--out", str(run), "--no-progress"]) == 0
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    events = [r for r in recs if r.get("event") == "nonfinite"]
    # Steps 0-2 were bad; the flag is read once, after step 4, and counts all three.
    assert [(e["step"], e["count"]) for e in events] == [(4, 3)]
    assert events[0]["lr_scale"] == 0.5
    from safetensors.torch import load_file

    w = load_file(str(run / "checkpoints" / "latest.safetensors"))
    assert all(torch.isfinite(v).all() for k, v in w.items() if v.is_floating_point())
    # The bad steps were left out of the logged training loss.
    assert all(math.isfinite(r["train_bpd"]) for r in recs if "train_bpd" in r)


def _digits_like(n=96, bins=17):
    g = torch.Generator().manual_seed(0)
    return Split("image", torch.randint(0, bins, (n, 1, 8, 8), generator=g, dtype=torch.uint8),
                 bins, "fake")


def test_lr_schedule_warmup_then_cosine():
    cfg = TrainConfig(steps=100, warmup=10, lr=1.0, batch_size=16)
    train = _digits_like()
    obj = DensityObjective(build_elementwise((1, 8, 8)), DataSpec("image", (1, 8, 8), 17))
    t = Trainer(cfg, obj, train, None)
    assert t.lr_at(0) == pytest.approx(0.1 * 0.5 * (1 + math.cos(0)))
    assert t.lr_at(9) == pytest.approx(0.5 * (1 + math.cos(math.pi * 9 / 100)))
    assert t.lr_at(50) == pytest.approx(0.5)
    assert t.lr_at(100) == pytest.approx(0.0, abs=1e-12)


def test_time_budget_horizon_recovers_from_a_slow_start(monkeypatch):
    """A slow first 20 steps must not end the cosine schedule early (lr stuck at 0)."""
    from invertible.training import loop as trainer_mod

    cfg = TrainConfig(max_time=100.0, warmup=0, lr=1.0, batch_size=16)
    obj = DensityObjective(build_elementwise((1, 8, 8)), DataSpec("image", (1, 8, 8), 17))
    t = Trainer(cfg, obj, _digits_like(), None)
    clock = [0.0]
    monkeypatch.setattr(trainer_mod.time, "perf_counter", lambda: clock[0])
    t._t0 = 0.0
    step_times = [0.5] * 20 + [0.01] * 20_000  # 0.5 s per step while warming up, then fast
    for n, dt in enumerate(step_times, start=1):
        clock[0] += dt
        if clock[0] >= cfg.max_time:
            break
        t.step = n
        t._maybe_plan(0.0, n)
        if cfg.max_time - clock[0] > 1.0:  # the cosine reaches 0 only at the very end
            assert t.lr_at(n) > 0, f"learning rate 0 at step {n}, {100 - clock[0]:.1f} s left"
    steps_that_fit = t.step
    assert abs(t.planned_steps - steps_that_fit) <= 0.02 * steps_that_fit


def test_actnorm_is_initialised_from_data_before_training():
    from invertible.layers.normalization import ActNorm

    flow = build_model("glow", (1, 8, 8), levels=1, depth=1, hidden=8)
    obj = DensityObjective(flow, DataSpec("image", (1, 8, 8), 17))
    Trainer(TrainConfig(steps=1, batch_size=16), obj, _digits_like(), None)
    norms = [m for m in flow.modules() if isinstance(m, ActNorm)]
    assert norms and all(bool(m.initialized) for m in norms)
    assert any(m.log_scale.abs().sum() > 0 for m in norms)


def test_bits_per_dim_counts_the_data_levels():
    # An untrained elementwise model on uniform noise: loss = -(log p(y) - D log n) / (D ln 2).
    obj = DensityObjective(build_elementwise((1, 8, 8)), DataSpec("image", (1, 8, 8), 17))
    x = _digits_like(8).x
    torch.manual_seed(1)
    bpd = obj(x)["bpd"]
    torch.manual_seed(1)
    y, _ = obj.dequant(x)
    expected = -(obj.flow.log_prob(y) - 64 * math.log(17)) / (64 * math.log(2))
    assert torch.allclose(bpd, expected)


def test_registry_errors():
    with pytest.raises(ModelError, match="unknown model"):
        build_model("nope", (1, 8, 8))
    with pytest.raises(ModelError, match="for image data"):
        build_model("glow", (2,))
    with pytest.raises(ModelError, match="for vector data"):
        build_model("maf", (1, 8, 8))
    with pytest.raises(ModelError, match="no option"):
        build_model("elementwise", (2,), hidden=3)
    assert isinstance(build_model("elementwise", (2,)), Flow)


def test_config_validation():
    with pytest.raises(ConfigError, match="budget"):
        TrainConfig().validate()
    with pytest.raises(ConfigError, match="batch-size"):
        TrainConfig(steps=1, batch_size=0).validate()
    with pytest.raises(ConfigError, match="larger than the training set"):
        obj = DensityObjective(build_elementwise((1, 8, 8)), DataSpec("image", (1, 8, 8), 17))
        Trainer(TrainConfig(steps=1, batch_size=1000), obj, _digits_like(), None)


@pytest.mark.parametrize("model", [["--model", "glow", "--model-option", "levels=1",
                                    "--model-option", "depth=2", "--model-option", "hidden=16"],
                                   ["--model", "iconvnet"]])
def test_amp_trains_on_cpu_in_bfloat16(tmp_path, model):
    """--amp is bfloat16 autocast on any device; the result tracks the float32 run."""
    common = [*model, "--steps", "30", "--batch-size", "32", "--val-every", "0", "--warmup", "0",
              "--no-progress", "--seed", "1"]
    assert main(["train", *common, "--out", str(tmp_path / "f32")]) == 0
    assert main(["train", *common, "--amp", "--out", str(tmp_path / "bf16")]) == 0

    def curve_and_test(run):
        recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        return [r["train_bpd"] for r in recs if "train_bpd" in r], next(
            r["test_bpd"] for r in recs if r.get("event") == "test")

    _, f32_test = curve_and_test(tmp_path / "f32")
    bf16, bf16_test = curve_and_test(tmp_path / "bf16")
    assert bf16[-1] < bf16[0] - 0.05  # it trains
    # The test pass runs in float32 on both: the bfloat16-trained weights are about as good.
    assert abs(bf16_test - f32_test) < 0.05 * f32_test


def test_run_folder_keeps_the_final_pictures_and_the_newest_ten_per_kind(tmp_path):
    from invertible.training.loop import MAX_PICTURE_HISTORY

    out = tmp_path / "run"
    # 15 sample points (every 2 of 30 steps): the 5 oldest pictures of each kind are removed.
    assert main(["train", "--model", "elementwise", "--steps", "30", "--batch-size", "16",
                 "--val-every", "2", "--sample-every", "2", "--no-progress",
                 "--out", str(out)]) == 0
    folders = [p for p in out.iterdir() if p.is_dir() and list(p.glob("step_*"))]
    assert folders, "no picture history was written"
    for folder in folders:
        history = sorted(p.name for p in folder.glob("step_*"))
        assert len(history) == MAX_PICTURE_HISTORY, (folder.name, history)
        assert history[0].startswith("step_0000012") and history[-1].startswith("step_0000030")
        assert list(folder.glob("final*")), f"{folder.name} lost its final picture"
