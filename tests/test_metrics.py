"""The metrics log: malformed lines are counted and reported, a torn last line is not."""

from __future__ import annotations

import json
import warnings

import pytest

from invertible.training.metrics import MetricsLog, read_metrics


def _lines(*recs: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in recs)


def test_malformed_lines_are_counted_in_one_warning(tmp_path):
    path = tmp_path / "metrics.jsonl"
    text = _lines({"step": 1}) + "{oops\n" + _lines({"step": 2}) + "[1, 2]\n\n"
    path.write_bytes(text.encode() + b'{"step": \xff}\n')  # not UTF-8: a flipped bit
    with pytest.warns(UserWarning, match=r"metrics\.jsonl: 3 malformed lines skipped"):
        recs = read_metrics(path)
    assert recs == [{"step": 1}, {"step": 2}]


def test_torn_last_line_is_skipped_silently(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(_lines({"step": 1}, {"step": 2}) + '{"step": 3, "lo')
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_metrics(path) == [{"step": 1}, {"step": 2}]


def test_complete_last_line_without_newline_is_kept(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(_lines({"step": 1}) + '{"step": 2}')
    assert read_metrics(path) == [{"step": 1}, {"step": 2}]


def test_malformed_last_line_with_newline_is_not_a_torn_write(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(_lines({"step": 1}) + "{broken\n")
    with pytest.warns(UserWarning, match="1 malformed line skipped"):
        assert read_metrics(path) == [{"step": 1}]


def test_log_round_trip_and_truncate(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for step in (1, 2, 3):
        log.write({"step": step, "loss": float("nan") if step == 2 else 1.0})
    log.truncate_after(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [r["step"] for r in read_metrics(log.path)] == [1, 2]
    assert read_metrics(tmp_path / "absent.jsonl") == []
