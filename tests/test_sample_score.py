"""The sample-quality score: the figures, the classifier and its cache, and the CLI lines."""

import contextlib
import io
import json
import math

import pytest
import torch

from invertible.cli.main import main
from invertible.evaluation import (
    ScoreClassifier,
    cache_stem,
    load_or_train_classifier,
    sample_score,
    score_classifier,
    score_or_reason,
    shared_stem,
    to_unit,
    train_score_classifier,
    unscorable_reason,
)
from invertible.training.config import TrainConfig
from invertible.training.datasets import Split, load_split
from invertible.training.objectives import build_objective

K = 10
TINY = ["--model", "elementwise", "--steps", "12", "--batch-size", "32", "--no-progress"]


@pytest.fixture(scope="module")
def digits(single_thread):
    cfg = TrainConfig(data="digits")
    return load_split(cfg, "train"), load_split(cfg, "test")


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    train, test = digits
    return load_or_train_classifier(tmp_path_factory.mktemp("score") / "clf", train, test)


def _small(split: Split, n: int) -> Split:
    """The first ``n`` rows: a classifier trained on them costs a fraction of a second."""
    assert split.y is not None
    return Split(split.kind, split.x[:n], split.n_bins, split.name, split.y[:n])


def _probs(clf: ScoreClassifier, levels: torch.Tensor) -> torch.Tensor:
    return clf.probabilities(to_unit(levels, 17))


# -- the figures ------------------------------------------------------------------------------
def test_balanced_one_hot_predictions_score_the_maximum():
    probs = torch.eye(K).repeat(7, 1)  # 70 confident predictions, 7 of each class
    s = sample_score(probs)
    assert s.n == 70 and s.n_classes == K
    assert s.mean_max_prob == pytest.approx(1.0)
    assert s.label_entropy == pytest.approx(math.log2(K)) and s.max_entropy == math.log2(K)
    assert s.inception_score == pytest.approx(K)


def test_one_class_or_unsure_predictions_score_one():
    one_class = sample_score(torch.eye(K)[[3] * 50])
    assert one_class.inception_score == pytest.approx(1.0)
    assert one_class.label_entropy == pytest.approx(0.0, abs=1e-12)
    assert one_class.mean_max_prob == pytest.approx(1.0)
    unsure = sample_score(torch.full((40, K), 1.0 / K))
    assert unsure.inception_score == pytest.approx(1.0)
    assert unsure.mean_max_prob == pytest.approx(1.0 / K)
    assert unsure.label_entropy == pytest.approx(math.log2(K))


def test_two_classes_half_sure():
    # p(y|x) = (0.75, 0.25) or (0.25, 0.75), half each: p(y) = (0.5, 0.5).
    probs = torch.tensor([[0.75, 0.25], [0.25, 0.75]]).repeat(5, 1)
    s = sample_score(probs)
    kl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert s.inception_score == pytest.approx(math.exp(kl))
    assert s.mean_max_prob == pytest.approx(0.75) and s.label_entropy == pytest.approx(1.0)


def test_score_refuses_a_table_that_is_not_probabilities():
    for bad in (torch.zeros(0, K), torch.ones(5), torch.ones(5, 1)):
        with pytest.raises(ValueError, match="class probabilities"):
            sample_score(bad)


# -- the classifier on real data and on noise ------------------------------------------------
def test_real_digits_score_near_the_maximum(digits, trained):
    _, test = digits
    assert trained.test_accuracy > 0.95
    s = sample_score(_probs(trained.model, test.x))
    assert s.mean_max_prob > 0.9
    assert s.inception_score > 0.8 * K
    assert s.label_entropy > 0.98 * math.log2(K)


def test_uniform_noise_scores_low(trained):
    gen = torch.Generator().manual_seed(7)
    noise = torch.randint(0, 17, (1000, 1, 8, 8), generator=gen, dtype=torch.uint8)
    s = sample_score(_probs(trained.model, noise))
    assert s.inception_score < 1.5  # real digits: above 8
    assert s.mean_max_prob < 0.4  # real digits: above 0.9


def test_one_class_of_real_digits_has_low_label_entropy(digits, trained):
    _, test = digits
    s = sample_score(_probs(trained.model, test.x[test.y == 3]))
    assert s.mean_max_prob > 0.9  # confident...
    assert s.label_entropy < 1.0 and s.inception_score < 1.5  # ...but no diversity


def test_samples_and_real_images_share_one_scale():
    assert torch.equal(to_unit(torch.tensor([0, 8, 16], dtype=torch.uint8), 17),
                       torch.tensor([0.0, 0.5, 1.0]))
    assert to_unit(torch.tensor([255], dtype=torch.uint8), 256).item() == 1.0


def test_classifier_takes_mnist_sized_images():
    clf = ScoreClassifier((1, 28, 28), K)
    assert clf(torch.rand(3, 1, 28, 28)).shape == (3, K)
    with pytest.raises(ValueError, match="at least 2x2"):
        ScoreClassifier((1, 1, 8), K)


def test_training_is_deterministic(digits):
    train, test = _small(digits[0], 200), digits[1]
    a, acc_a = train_score_classifier(train, test, seed=3)
    b, acc_b = train_score_classifier(train, test, seed=3)
    assert acc_a == acc_b
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name


# -- the cache --------------------------------------------------------------------------------
@pytest.fixture
def user_cache(tmp_path, monkeypatch):
    """An empty user cache of this test's own."""
    monkeypatch.setenv("INVERTIBLE_DATA", str(tmp_path / "user-cache"))
    return tmp_path / "user-cache" / "score-classifiers"


def _no_training(monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("retrained although a cache is sound")

    monkeypatch.setattr(score_classifier, "train_score_classifier", no_training)


def test_second_call_loads_the_cache(digits, tmp_path, user_cache, monkeypatch):
    train, test = _small(digits[0], 200), digits[1]
    first = load_or_train_classifier(tmp_path / "clf", train, test)
    assert not first.loaded and first.path == tmp_path / "clf.safetensors"
    assert shared_stem(train, test).with_suffix(".safetensors").is_file()
    assert shared_stem(train, test).parent.parent == user_cache
    _no_training(monkeypatch)
    second = load_or_train_classifier(tmp_path / "clf", train, test)
    assert second.loaded and second.test_accuracy == first.test_accuracy
    assert torch.equal(_probs(first.model, test.x), _probs(second.model, test.x))


def test_another_run_on_the_same_data_reuses_the_user_cache(digits, tmp_path, user_cache,
                                                            monkeypatch):
    train, test = _small(digits[0], 200), digits[1]
    first = load_or_train_classifier(tmp_path / "a" / "clf", train, test)
    _no_training(monkeypatch)
    other = load_or_train_classifier(tmp_path / "b" / "clf", train, test)
    assert other.loaded and other.path == tmp_path / "b" / "clf.safetensors"  # its own copy
    shared_stem(train, test).with_suffix(".safetensors").unlink()
    messages: list[str] = []
    copy = load_or_train_classifier(tmp_path / "b" / "clf", train, test, warn=messages.append)
    assert copy.loaded and not messages  # the copy is a sound checkpoint of its own
    assert torch.equal(_probs(first.model, test.x), _probs(other.model, test.x))
    assert shared_stem(_small(digits[0], 150), test) != shared_stem(train, test)


def _flip_a_bit(path):
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0x01  # a flipped bit in the tensor data still parses: only the sha256 sees it
    path.write_bytes(bytes(raw))


def test_corrupt_cache_is_detected_and_replaced(digits, tmp_path, user_cache):
    train, test = _small(digits[0], 200), digits[1]
    first = load_or_train_classifier(tmp_path / "clf", train, test)
    _flip_a_bit(first.path)
    messages: list[str] = []
    again = load_or_train_classifier(tmp_path / "clf", train, test, warn=messages.append)
    assert again.loaded and again.path == first.path  # the user cache's copy, written back
    assert len(messages) == 1 and "\n" not in messages[0]
    assert "corrupt" in messages[0] and "sha256" in messages[0] and "rejected" in messages[0]
    assert torch.equal(_probs(first.model, test.x), _probs(again.model, test.x))
    assert load_or_train_classifier(tmp_path / "clf", train, test).loaded  # rewritten, sound
    # Both copies corrupt: both are reported and the classifier is trained again.
    _flip_a_bit(first.path)
    _flip_a_bit(shared_stem(train, test).with_suffix(".safetensors"))
    messages.clear()
    rebuilt = load_or_train_classifier(tmp_path / "clf", train, test, warn=messages.append)
    assert not rebuilt.loaded and len(messages) == 2
    assert torch.equal(_probs(first.model, test.x), _probs(rebuilt.model, test.x))
    assert load_or_train_classifier(tmp_path / "clf", train, test).loaded


def test_cache_of_other_data_is_retrained(digits, tmp_path, user_cache):
    train, test = digits[0], digits[1]
    load_or_train_classifier(tmp_path / "clf", _small(train, 200), test)
    messages: list[str] = []
    other = load_or_train_classifier(tmp_path / "clf", _small(train, 150), test,
                                     warn=messages.append)
    assert not other.loaded
    assert len(messages) == 1 and "other data" in messages[0]
    # Another image shape (the JSON is not under the checksum): said in the message.
    meta = json.loads((tmp_path / "clf.json").read_text())
    (tmp_path / "clf.json").write_text(json.dumps({**meta, "shape": [1, 8, 9]}))
    messages.clear()
    reread = load_or_train_classifier(tmp_path / "clf", _small(train, 150), test,
                                      warn=messages.append)
    assert reread.loaded  # from the user cache, which holds the 150-image classifier
    assert len(messages) == 1 and "shape [1, 8, 9] (the run's: [1, 8, 8])" in messages[0]


def test_a_read_only_run_folder_uses_the_user_cache_alone(digits, tmp_path, user_cache,
                                                          monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    assert cache_stem(run) == run / "score_classifier"
    monkeypatch.setattr(score_classifier.os, "access", lambda path, mode: False)
    assert cache_stem(run) is None
    train, test = _small(digits[0], 200), digits[1]
    first = load_or_train_classifier(None, train, test)
    assert first.path == shared_stem(train, test).with_suffix(".safetensors")
    assert first.path.parent.parent == user_cache and not list(run.iterdir())
    assert load_or_train_classifier(None, train, test).loaded


# -- the command line -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits_run(tmp_path_factory, single_thread):
    out = tmp_path_factory.mktemp("runs") / "digits"
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        assert main(["train", *TINY, "--out", str(out)]) == 0
    return out, text.getvalue().splitlines()


def _quality_lines(lines: list[str]) -> list[str]:
    start = next(i for i, line in enumerate(lines) if line.startswith("sample quality ("))
    return lines[start : start + 4]


def test_train_prints_sample_quality_before_the_samples_path(digits_run):
    out, lines = digits_run
    test_line = next(i for i, line in enumerate(lines) if line.startswith("test bits/dim"))
    head, samples, real, ratio = _quality_lines(lines)
    assert lines.index(head) == test_line + 1
    assert "% test accuracy; cached in " in head and "score_classifier.safetensors" in head
    assert samples.startswith("  1000 samples:") and "IS " in samples
    assert real.startswith("  359 real test:") and "label entropy" in real
    assert ratio.startswith("  samples / real mean max prob: ") and ratio.endswith("%")
    assert lines[lines.index(ratio) + 1].startswith("samples: ")
    assert (out / "score_classifier.safetensors").is_file()


def test_evaluate_prints_sample_quality_and_json(digits_run, capsys):
    out, train_lines = digits_run
    assert main(["evaluate", str(out), "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    # The cached classifier, the same seeded samples and evaluation weights as train's.
    assert _quality_lines(lines) == _quality_lines(train_lines)
    q = json.loads(lines[-1])["sample_quality"]
    assert q["samples"]["n"] == 1000 and q["real"]["n"] == 359
    assert q["real"]["mean_max_prob"] > 0.9 and q["real"]["inception_score"] > 0.8 * K
    assert q["classifier_test_accuracy"] > 0.95
    assert q["mean_max_prob_ratio"] == pytest.approx(
        q["samples"]["mean_max_prob"] / q["real"]["mean_max_prob"])
    assert f"{100 * q['mean_max_prob_ratio']:.0f}%" in _quality_lines(lines)[3]


def test_evaluate_options_and_runs_without_a_score(digits_run, tmp_path, capsys):
    out, _ = digits_run
    assert main(["evaluate", str(out), "--json", "--score-samples", "50"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert _quality_lines(lines)[1].startswith("  50 samples:")
    q = json.loads(lines[-1])["sample_quality"]
    assert q["samples"]["n"] == q["real"]["n"] == 50
    assert main(["evaluate", str(out), "--json", "--no-sample-score"]) == 0
    text = capsys.readouterr().out
    assert "sample quality" not in text and "sample_quality" not in text
    # Vector data: nothing said, no traceback.
    moons = tmp_path / "moons"
    assert main(["train", "--data", "moons", "--model", "maf", "--steps", "2", "--depth", "1",
                 "--no-progress", "--val-every", "0", "--out", str(moons)]) == 0
    assert main(["evaluate", str(moons), "--json"]) == 0
    captured = capsys.readouterr()
    assert "sample quality" not in captured.out and "Traceback" not in captured.err
    assert "sample_quality" not in captured.out.strip().splitlines()[-1]


def test_train_without_the_score(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", *TINY, "--steps", "2", "--no-sample-score", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "test bits/dim" in out and "sample quality" not in out and "samples: " in out
    assert not (run / "score_classifier.safetensors").exists()


def test_which_runs_are_scored():
    def objective(task="density", kind="image", n_classes=10, model="elementwise"):
        shape = [1, 8, 8] if kind == "image" else [2]
        cfg = TrainConfig(data="digits", task=task, model=model)
        return build_objective(cfg, {"kind": kind, "shape": shape, "n_bins": 17,
                                     "n_classes": n_classes})

    assert unscorable_reason(objective()) is None
    assert "vectors" in unscorable_reason(objective(kind="vector", model="maf"))
    assert "no class labels" in unscorable_reason(objective(n_classes=None))
    assert "cannot generate samples" in unscorable_reason(objective("classify", model="convnet"))
    # A DP run's classifier would see the private data without a guarantee.
    assert "differentially private" in unscorable_reason(objective(), private=True)

    # score_or_reason: the one line, without loading the splits it would not use.
    def no_splits():
        raise AssertionError("splits loaded for an unscorable run")

    line = score_or_reason(objective(n_classes=None), False, no_splits, None)
    assert line == "(no sample-quality score: the dataset has no class labels)"
    assert "differentially private" in score_or_reason(objective(), True, no_splits, None)


def test_evaluate_says_why_a_classifier_run_is_not_scored(tmp_path, capsys):
    run = tmp_path / "clf"
    assert main(["train", "--task", "classify", "--steps", "2", "--batch-size", "32",
                 "--no-progress", "--val-every", "0", "--out", str(run)]) == 0
    assert "sample quality" not in capsys.readouterr().out
    assert main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    assert "(no sample-quality score: a 'classify' run cannot generate samples)" in out
