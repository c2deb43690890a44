"""Shared pieces of the command line: the error type, the parser, argument types, outputs."""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import numpy as np
import torch

__all__ = [
    "Parser",
    "UsageError",
    "model_option",
    "nonneg_int",
    "npy_bytes",
    "output_path",
    "positive_float",
    "positive_int",
    "resolve_device",
]


class UsageError(Exception):
    """A mistake of the user's: printed as ``invertible: error: <message>``, exit code 2."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors become ``UsageError`` (one line, no usage dump)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


_N = TypeVar("_N", int, float)


def _number(kind: Callable[[str], _N], text: str, what: str) -> _N:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got '{text}'") from None


def model_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` -> ``(key, value)``, the value parsed as JSON when it parses, else text."""
    key, sep, raw = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def positive_int(text: str) -> int:
    v = _number(int, text, "a positive integer")
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {v}")
    return v


def nonneg_int(text: str) -> int:
    v = _number(int, text, "an integer >= 0")
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def positive_float(text: str) -> float:
    v = _number(float, text, "a positive number")
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return v


def unit_float(text: str) -> float:
    v = _number(float, text, "a number in [0, 1)")
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {text}")
    return v


def output_path(path: str, force: bool, suffixes: tuple[str, ...]) -> Path:
    """Check an output file: a known suffix, a folder that exists, no overwrite unless forced."""
    p = Path(path)
    if p.suffix.lower() not in suffixes:
        raise UsageError(f"output {p} must end in {' or '.join(suffixes)}")
    if p.is_dir():
        raise UsageError(f"output {p} is a directory")
    if p.exists() and not force:
        raise UsageError(f"output {p} exists (use --force to overwrite it)")
    if not p.parent.is_dir():
        raise UsageError(f"folder {p.parent} does not exist")
    return p


def npy_bytes(a: np.ndarray) -> bytes:
    """``a`` as the bytes of a .npy file (for an atomic write)."""
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def resolve_device(name: str | None) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available)."""
    name = name or "cpu"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device '{name}' (use cpu, cuda, cuda:N or auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device '{name}' requested but CUDA is not available")
    if dev.type not in ("cpu", "cuda"):
        raise UsageError(f"device '{name}' is not supported (use cpu, cuda, cuda:N or auto)")
    return dev


def say(msg: str) -> None:
    print(msg, flush=True)


def warn(msg: str) -> None:
    print(f"invertible: {msg}", file=sys.stderr, flush=True)
