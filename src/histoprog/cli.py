"""Command-line interface: one subcommand per workflow stage.

Each stage lives in ``histoprog.commands.<name>`` and exposes ``register(subparsers)``,
which adds its parser and sets ``func`` to a callable taking the parsed arguments.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from histoprog import __version__
from histoprog.errors import HistoprogError

COMMANDS: tuple[str, ...] = (
    "synth",
    "tile",
    "stain",
    "status",
    "train_tissue",
    "evaluate_tissue",
    "classify",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every stage's subcommand."""
    parser = argparse.ArgumentParser(prog="histoprog", description=__doc__)
    parser.add_argument("--version", action="version", version=f"histoprog {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"histoprog.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; bad input exits with status 2 and a one-paragraph message."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except HistoprogError as err:
        print(f"histoprog {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0
