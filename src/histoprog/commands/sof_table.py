"""``histoprog sof_table``: a cohort's ``sof.tsv`` from its per-slide SOF records."""

from __future__ import annotations

import argparse
import logging

from histoprog.analysis.features import sof_table
from histoprog.cli_options import add_cohort_slides
from histoprog.io import read_json, write_tsv

log = logging.getLogger("histoprog.sof_table")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sof_table`` subcommand."""
    parser = subparsers.add_parser("sof_table", help="per-cohort sof.tsv from per-slide SOFs")
    add_cohort_slides(parser)
    parser.add_argument("--name", default="sof.json", help="per-slide SOF record file name")
    parser.add_argument("--out", required=True)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    """Collect the records (in slide-table order) and write the table."""
    records = [read_json(f"{args.slides_dir}/{s}/{args.name}") for s in args.slide_ids]
    table = sof_table(records)
    write_tsv(args.out, table)
    counts = table["status"].value_counts().to_dict()
    log.info("%d slides: %s", len(table), counts)
