"""Command-line interface: one subcommand per workflow stage.

``COMMANDS`` maps each subcommand to its module ``histoprog.commands.<module>``, which
exposes ``register(subparsers)``: it adds the subcommand's parser and sets ``func`` to a
callable taking the parsed arguments.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from histoprog import __version__
from histoprog.errors import HistoprogError

COMMANDS: dict[str, str] = {
    "synth": "synth",
    "tile": "tile",
    "stain": "stain",
    "status": "status",
    "train_tissue": "train_tissue",
    "evaluate_tissue": "evaluate_tissue",
    "classify": "classify",
    "gmm-thresholds": "gmm_thresholds",
    "sof": "sof",
    "sof-table": "sof_table",
    "crlm-analysis": "crlm_analysis",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Build the top-level parser.

    Only ``command``'s module is imported when it is given (stages import torch and other
    heavy packages; a per-slide job should pay only for its own); otherwise all are.
    """
    parser = argparse.ArgumentParser(prog="histoprog", description=__doc__)
    parser.add_argument("--version", action="version", version=f"histoprog {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    modules = [COMMANDS[command]] if command in COMMANDS else COMMANDS.values()
    for module in modules:
        importlib.import_module(f"histoprog.commands.{module}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; bad input exits with status 2 and a one-paragraph message."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    try:
        args.func(args)
    except HistoprogError as err:
        print(f"histoprog {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0
