"""Command-line interface: one subcommand per workflow stage.

Each subcommand in ``COMMANDS`` (named like its rule) lives in the module
``histoprog.commands.<name>``, which exposes ``register(subparsers)``: it adds the
subcommand's parser and sets ``func`` to a callable taking the parsed arguments.
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
    "gmm_thresholds",
    "sof",
    "sof_table",
    "geojson",
    "crlm_analysis",
    "export_model",
    "train_unet",
    "nuclei",
    "train_mil",
    "mil_score",
    "mil_table",
    "hcc_analysis",
)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Build the top-level parser.

    Only ``command``'s module is imported when it is given (stages import torch and other
    heavy packages; a per-slide job should pay only for its own); otherwise all are.
    """
    parser = argparse.ArgumentParser(prog="histoprog", description=__doc__)
    parser.add_argument("--version", action="version", version=f"histoprog {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in [command] if command in COMMANDS else COMMANDS:
        importlib.import_module(f"histoprog.commands.{name}").register(subparsers)
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
