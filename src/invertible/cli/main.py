"""``invertible``: train, evaluate, sample and inspect normalizing flows from the terminal."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from typing import TextIO

from .common import Parser, UsageError

__all__ = ["build_parser", "main"]

_COMMANDS = ("train", "evaluate", "sample", "interpolate", "encode", "decode", "compress",
             "decompress", "reduce", "reconstruct", "invert", "privacy-report", "info")


def build_parser() -> Parser:
    from . import (
        codec,
        compress,
        evaluate,
        info,
        interpolate,
        invert,
        privacy_report,
        reconstruct,
        reduce,
        sample,
        train,
    )

    parser = Parser(
        prog="invertible",
        description="Train, evaluate and sample invertible networks (normalizing flows).",
        epilog="Run 'invertible COMMAND --help' for the options of one command.",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"invertible {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    train.add_parser(sub)
    evaluate.add_parser(sub)
    sample.add_parser(sub)
    interpolate.add_parser(sub)
    codec.add_parsers(sub)
    compress.add_parsers(sub)
    reduce.add_parser(sub)
    reconstruct.add_parser(sub)
    invert.add_parser(sub)
    privacy_report.add_parser(sub)
    info.add_parser(sub)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    from ..core import InvalidInputError
    from ..data import DatasetError
    from ..models.registry import ModelError
    from ..training.checkpoint import CheckpointError
    from ..training.config import ConfigError
    from ..training.objectives import TaskError

    return (UsageError, ModelError, CheckpointError, ConfigError, InvalidInputError,
            DatasetError, TaskError)


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str,
                      lineno: int, file: TextIO | None = None, line: str | None = None) -> None:
    # A user reads "invertible: warning: ...", not a source location.
    print(f"invertible: warning: {' '.join(str(message).split())}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``invertible`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        return _main(argv)


def _main(argv: list[str]) -> int:
    errors = _user_errors()
    try:
        args = build_parser().parse_args(argv)
        return int(args.run(args) or 0)
    except errors as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"invertible: error: {msg}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("invertible: interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:  # --help and --version exit 0 through argparse
        return int(e.code or 0) if not isinstance(e.code, str) else 2
