"""Checkpoint files: safetensors + JSON, atomic, pickle-free, and exact for optimizer/RNG."""

import json
import random

import numpy as np
import pytest
import torch

from invertible.training.checkpoint import (
    CheckpointError,
    atomic_write_text,
    capture_rng,
    flatten_optimizer,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
    unflatten_optimizer,
)


def test_round_trip_and_no_temp_files(tmp_path):
    tensors = {"model.w": torch.randn(3, 4), "model.flag": torch.tensor(True)}
    save_checkpoint(tmp_path / "latest", tensors, {"step": 7, "note": "x"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.json", "latest.safetensors"]
    back, meta = load_checkpoint(tmp_path / "latest")
    assert meta["step"] == 7 and meta["note"] == "x"
    assert torch.equal(back["model.w"], tensors["model.w"])
    assert bool(back["model.flag"])


def test_shared_storage_is_saved(tmp_path):
    base = torch.randn(6)
    save_checkpoint(tmp_path / "c", {"a": base, "b": base[:3]}, {"step": 0})
    back, _ = load_checkpoint(tmp_path / "c")
    assert torch.equal(back["b"], base[:3])


@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing_json", "bad_json", "pickle"])
def test_corrupt_checkpoints_raise_checkpoint_error(tmp_path, damage):
    save_checkpoint(tmp_path / "c", {"w": torch.randn(50)}, {"step": 1})
    w, j = tmp_path / "c.safetensors", tmp_path / "c.json"
    if damage == "truncate":
        w.write_bytes(w.read_bytes()[:40])
    elif damage == "garbage":
        w.write_bytes(b"\x00" * 8 + b"not a header")
    elif damage == "missing_json":
        j.unlink()
    elif damage == "bad_json":
        j.write_text("{")
    elif damage == "pickle":
        torch.save({"w": torch.randn(3)}, w)  # a pickle where safetensors belongs
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "c")


def test_mismatched_halves_are_detected(tmp_path):
    save_checkpoint(tmp_path / "a", {"w": torch.zeros(2)}, {"step": 1})
    save_checkpoint(tmp_path / "b", {"w": torch.ones(2)}, {"step": 2})
    (tmp_path / "a.json").write_text((tmp_path / "b.json").read_text())
    with pytest.raises(CheckpointError, match="same save"):
        load_checkpoint(tmp_path / "a")


def test_optimizer_state_round_trip_is_exact():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(5, 3)).pow(2).sum().backward()
        opt.step()
    tensors, meta = flatten_optimizer(opt.state_dict())
    tensors = {k: v.clone() for k, v in tensors.items()}  # as if read from a file
    meta = json.loads(json.dumps(meta))  # must survive JSON
    clone = torch.nn.Linear(3, 2)
    clone.load_state_dict(model.state_dict())
    opt2 = torch.optim.Adam(clone.parameters(), lr=1.0)
    opt2.load_state_dict(unflatten_optimizer(tensors, meta))
    x = torch.randn(5, 3)
    for m, o in ((model, opt), (clone, opt2)):
        o.zero_grad()
        m(x).pow(2).sum().backward()
        o.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), clone.parameters()))


def test_rng_states_round_trip():
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    tensors, meta = capture_rng()
    meta = json.loads(json.dumps(meta))
    first = (torch.rand(4), np.random.rand(4), np.random.randn(), random.random())
    restore_rng(tensors, meta)
    again = (torch.rand(4), np.random.rand(4), np.random.randn(), random.random())
    assert torch.equal(first[0], again[0])
    assert np.array_equal(first[1], again[1]) and first[2:] == again[2:]


def test_atomic_write_replaces_whole_file(tmp_path):
    p = tmp_path / "f.txt"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    assert [q.name for q in tmp_path.iterdir()] == ["f.txt"]


def _flip(path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["tensor data", "header", "header tag"])
def test_flipped_bits_are_detected(tmp_path, where):
    save_checkpoint(tmp_path / "c", {"w": torch.randn(50), "b": torch.zeros(3)}, {"step": 1})
    w = tmp_path / "c.safetensors"
    raw = w.read_bytes()
    header_end = 8 + int.from_bytes(raw[:8], "little")
    offset = {
        "tensor data": header_end + 17,  # inside "w": still parses, loads wrong weights
        "header": 8,  # the header's opening brace
        "header tag": raw.index(b'"tag"') + 9,  # a digit or letter of the save tag's value
    }[where]
    assert offset < len(raw)
    _flip(w, offset)
    with pytest.raises(CheckpointError, match="c.safetensors") as info:
        load_checkpoint(tmp_path / "c")
    assert "\n" not in str(info.value)
    if where != "header tag":  # a changed tag reads as a file from another save
        assert "sha256 does not match" in str(info.value)


def test_clean_checkpoint_records_its_sha256(tmp_path):
    import hashlib

    save_checkpoint(tmp_path / "c", {"w": torch.arange(4.0)}, {"step": 3})
    meta = json.loads((tmp_path / "c.json").read_text())
    digest = hashlib.sha256((tmp_path / "c.safetensors").read_bytes()).hexdigest()
    assert meta["sha256"] == digest and meta["format"] == "invertible-checkpoint-2"
    back, _ = load_checkpoint(tmp_path / "c")
    assert torch.equal(back["w"], torch.arange(4.0))


def test_format_1_checkpoints_are_refused_clearly(tmp_path):
    save_checkpoint(tmp_path / "c", {"w": torch.zeros(2)}, {"step": 1})
    j = tmp_path / "c.json"
    doc = json.loads(j.read_text())
    doc["format"] = "invertible-checkpoint-1"
    del doc["sha256"]
    j.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="invertible-checkpoint-1.*no checksum"):
        load_checkpoint(tmp_path / "c")
