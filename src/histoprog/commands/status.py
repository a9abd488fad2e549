"""``histoprog status``: the per-cohort slide status table."""

from __future__ import annotations

import argparse

from histoprog.cli_options import add_cohort_slides
from histoprog.io import write_tsv
from histoprog.status import cohort_status


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``status`` subcommand."""
    parser = subparsers.add_parser(
        "status", help="per-cohort table of which slides failed, at which stage and why"
    )
    add_cohort_slides(parser)
    parser.add_argument(
        "--stages",
        nargs="+",
        default=["tiles", "stain"],
        help="per-slide JSON outputs to read, in pipeline order",
    )
    parser.add_argument("--out", required=True)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    """Write the status table."""
    outputs = [
        [f"{args.slides_dir}/{slide}/{stage}.json" for stage in args.stages]
        for slide in args.slide_ids
    ]
    write_tsv(args.out, cohort_status(args.slide_ids, outputs))
