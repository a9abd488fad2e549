"""Cohort sheet, slide tables and clinical tables: reading and validation.

Every problem is reported as an `InputError` that names the file, row and column. The
sheets are validated against the JSON schemas in ``workflow/schemas/`` with Snakemake's
``validate`` (which also fills in schema defaults).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from histoprog.errors import InputError

ID_COLUMNS = ("cohort", "slide_id", "patient_id")


def read_table(path: str | os.PathLike[str], what: str) -> pd.DataFrame:
    """Read a TSV with identifier columns as strings; a clear error if it is missing or empty."""
    file = Path(path)
    if not file.is_file():
        raise InputError(
            f"{what} '{file}'",
            "the file does not exist",
            f"create it or correct the path to {what}",
        )
    try:
        table = pd.read_csv(
            file, sep="\t", dtype={c: str for c in ID_COLUMNS}, comment="#", skip_blank_lines=True
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(
            f"{what} '{file}'",
            f"it cannot be read as a tab-separated table ({err})",
            "save it as UTF-8 text with one header row and tab-separated columns",
        ) from err
    table.columns = [str(c).strip() for c in table.columns]
    return table


def validate_table(table: pd.DataFrame, schema: str | os.PathLike[str], where: str) -> pd.DataFrame:
    """Validate each row against a JSON schema (Snakemake's ``validate``, defaults filled in)."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    try:
        validate(table, os.fspath(schema), set_default=True)
    except WorkflowError as err:
        detail = " ".join(str(err).split())
        raise InputError(
            where,
            f"a row does not match the schema {Path(schema).name}: {detail[:600]}",
            "correct the column named in the message (the schema documents each column)",
        ) from err
    return table


def require_unique(table: pd.DataFrame, column: str, where: str) -> None:
    """Fail when ``column`` has duplicated values, listing them."""
    duplicated = table.loc[table[column].duplicated(keep=False), column]
    if not duplicated.empty:
        names = ", ".join(sorted(set(duplicated.astype(str))))
        raise InputError(
            where,
            f"duplicate {column} values: {names}",
            f"give every row a unique {column} (they name output folders)",
        )


def require_columns(table: pd.DataFrame, columns: Sequence[str], where: str, fix: str) -> None:
    """Fail when any of ``columns`` is missing, naming them and the columns present."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(
            where,
            f"missing required column(s) {', '.join(repr(c) for c in missing)} "
            f"(columns present: {', '.join(map(str, table.columns))})",
            fix,
        )


def load_cohorts(path: str | os.PathLike[str], schema: str | os.PathLike[str]) -> pd.DataFrame:
    """Read and validate the cohort sheet; index by cohort name."""
    where = f"cohort sheet '{path}'"
    table = read_table(path, "cohort sheet")
    require_columns(table, ["cohort", "role", "clinical"], where, "see config/README.md")
    table = table.astype(object).where(table.notna(), None)
    validate_table(table, schema, where)
    # validate() fills defaults row by row and turns the empty cells back into NaN
    table = table.astype(object).where(table.notna(), None)
    require_unique(table, "cohort", where)
    for column in ("slides", "features", "synth_spec"):
        if column not in table:
            table[column] = None
    no_input = table[table["slides"].isna() & table["features"].isna()]
    if not no_input.empty:
        raise InputError(
            where,
            f"cohort(s) {', '.join(no_input['cohort'])} give neither 'slides' nor 'features'",
            "give a slide table in 'slides' or a per-patient feature table in 'features'",
        )
    return table.set_index("cohort", drop=False)


def load_slides(path: str | os.PathLike[str], schema: str | os.PathLike[str]) -> pd.DataFrame:
    """Read and validate one cohort's slide table; resolve paths against its folder."""
    where = f"slide table '{path}'"
    table = read_table(path, "slide table")
    require_columns(
        table,
        ["slide_id", "patient_id", "path"],
        where,
        "see the slide table section of config/README.md",
    )
    if "mpp" not in table:
        table["mpp"] = float("nan")
    table["mpp"] = pd.to_numeric(table["mpp"], errors="coerce")
    validate_table(table, schema, where)
    require_unique(table, "slide_id", where)
    folder = Path(path).parent
    table["path"] = [
        os.path.normpath(folder / p) if not os.path.isabs(p) else p for p in table["path"]
    ]
    return table.set_index("slide_id", drop=False)


def check_clinical(
    path: str | os.PathLike[str], required: Sequence[str], schema: str | os.PathLike[str]
) -> pd.DataFrame:
    """Read a clinical table and check that ``patient_id`` and the outcome columns exist."""
    where = f"clinical table '{path}'"
    table = read_table(path, "clinical table")
    require_columns(
        table,
        ["patient_id", *required],
        where,
        "add the column, or name the table's outcome columns in config.yaml under "
        "clinical.<pipeline>.time / .event",
    )
    validate_table(table, schema, where)
    require_unique(table, "patient_id", where)
    return table
