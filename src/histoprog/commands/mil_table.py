"""``histoprog mil_table``: a cohort's ``mil.tsv`` from its per-slide MIL scores.

Columns: ``slide_id``, ``patient_id``, ``score`` (S), ``mean_logit`` (T), ``group``
(high/low), ``n_tiles``, ``status`` (``ok`` or ``failed``), ``reason``.
"""

from __future__ import annotations

import argparse
import logging

import pandas as pd

from histoprog.io import read_json, write_tsv

log = logging.getLogger("histoprog.mil_table")

COLUMNS = ("slide_id", "patient_id", "score", "mean_logit", "group", "n_tiles", "status", "reason")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``mil_table`` subcommand."""
    parser = subparsers.add_parser("mil_table", help="assemble a cohort's mil.tsv")
    parser.add_argument("--scores", nargs="+", required=True, help="mil_score.json files")
    parser.add_argument("--out", required=True)
    parser.set_defaults(func=run)


def mil_table(paths: list[str]) -> pd.DataFrame:
    """One row per score record, in the given order."""
    rows = [read_json(p) for p in paths]
    table = pd.DataFrame(rows).reindex(columns=list(COLUMNS))
    table["n_tiles"] = table["n_tiles"].astype("Int64")
    table["reason"] = table["reason"].fillna("")
    return table


def run(args: argparse.Namespace) -> None:
    """Write the table; failed slides are listed with their reason."""
    table = mil_table(args.scores)
    write_tsv(args.out, table)
    failed = table[table["status"] != "ok"]
    log.info("mil.tsv: %d slides, %d failed", len(table), len(failed))
