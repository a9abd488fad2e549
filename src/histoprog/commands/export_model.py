"""``histoprog export_model``: write a model bundle (:mod:`histoprog.bundle`).

The workflow calls it at the end of a discovery (CRLM) or training (HCC) run; the bundle
it writes under ``results/models/<kind>_model/`` is what ``crlm.model`` / ``hcc.model``
apply at another site without refitting.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from histoprog.bundle import KINDS, write_bundle
from histoprog.errors import InputError
from histoprog.io import read_json

log = logging.getLogger("histoprog.export_model")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export_model`` subcommand."""
    parser = subparsers.add_parser("export_model", help="write a model bundle")
    parser.add_argument("--kind", required=True, choices=KINDS)
    parser.add_argument(
        "--file",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a file to copy into the bundle under NAME; repeat",
    )
    parser.add_argument(
        "--record",
        action="append",
        default=[],
        metavar="KEY=JSON_FILE",
        help="a JSON file stored under KEY in bundle.json (e.g. model=model.json); repeat",
    )
    parser.add_argument(
        "--locked", required=True, help="dotted config key -> value (JSON text) to lock"
    )
    parser.add_argument("--values", default="{}", help="more bundle.json entries as JSON text")
    parser.add_argument("--out", required=True, help="the bundle folder")
    parser.set_defaults(func=run)


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    """``NAME=VALUE`` items as a dict."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise InputError(flag, f"{item!r} is not NAME=PATH", "write e.g. model=model.json")
        out[name] = value
    return out


def run(args: argparse.Namespace) -> None:
    """Collect the files and records and write the bundle."""
    record: dict[str, Any] = json.loads(args.values)
    for key, path in _pairs(args.record, "--record").items():
        record[key] = read_json(path)
    files = _pairs(args.file, "--file")
    for name, path in files.items():
        if not Path(path).is_file():
            raise InputError(
                f"--file {name}={path}", "the file does not exist", "run the step that writes it"
            )
    folder = write_bundle(args.out, args.kind, files, json.loads(args.locked), record)
    log.info("wrote the %s model bundle %s (%d files)", args.kind, folder, len(files))
