"""Cohort sheet, slide tables and clinical tables: reading and validation.

Every problem is reported as an `InputError` that names the file, row and column. The
sheets are validated against the JSON schemas in ``workflow/schemas/`` with Snakemake's
``validate`` (which also fills in schema defaults).

Relative paths are relative to the folder of the table that holds them: slide files to
the slide table's, and the slide, clinical, feature and synth-spec tables to the cohort
sheet's. A cohort sheet written before this rule (paths relative to the working
directory) still works: see :func:`resolve_sheet_paths`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from histoprog.clinical_values import ClinicalCheck, check_values, run_columns
from histoprog.errors import InputError
from histoprog.resolution import check_sheet_mpp
from histoprog.sheet_values import BadValue, parse_number

log = logging.getLogger(__name__)

ID_COLUMNS = ("cohort", "slide_id", "patient_id")
PATH_COLUMNS = ("slides", "clinical", "features", "synth_spec")
"""Cohort-sheet columns that hold paths."""


def read_table(path: str | os.PathLike[str], what: str) -> pd.DataFrame:
    """Read a TSV with identifier columns as strings; a clear error if it is missing or empty."""
    file = Path(path)
    if not file.is_file():
        raise InputError(
            f"{what} '{file}'",
            f"the file does not exist (looked for '{file.absolute()}')",
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
    """Read and validate the cohort sheet; index by cohort name; resolve and check paths.

    Paths are resolved by :func:`resolve_sheet_paths`. The files a cohort reads from its
    sheet must exist: the slide table and synth spec always, the clinical and feature
    tables unless the cohort is generated (``synth_spec``), which writes its clinical table.
    """
    where = f"cohort sheet '{path}'"
    table = read_table(path, "cohort sheet")
    require_columns(table, ["cohort", "role", "clinical"], where, "see config/README.md")
    table = table.astype(object).where(table.notna(), None)
    validate_table(table, schema, where)
    # validate() fills defaults row by row and turns the empty cells back into NaN
    table = table.astype(object).where(table.notna(), None)
    require_unique(table, "cohort", where)
    for column in PATH_COLUMNS:
        if column not in table:
            table[column] = None
    no_input = table[table["slides"].isna() & table["features"].isna()]
    if not no_input.empty:
        raise InputError(
            where,
            f"cohort(s) {', '.join(no_input['cohort'])} give neither 'slides' nor 'features'",
            "give a slide table in 'slides' or a per-patient feature table in 'features'",
        )
    written = table[list(PATH_COLUMNS)].copy()
    base = resolve_sheet_paths(table, Path(path), where)
    for _, row in table.iterrows():
        needed = ["slides", "synth_spec"] if row["synth_spec"] else list(PATH_COLUMNS)
        for column in needed:
            if row[column] and not Path(row[column]).exists():
                raise InputError(
                    f"{where}, cohort '{row['cohort']}', column '{column}'",
                    f"'{written.loc[row.name, column]}' does not exist (resolved to "
                    f"'{Path(row[column]).absolute()}')",
                    f"correct the path; relative paths are relative to {base}",
                )
    return table.set_index("cohort", drop=False)


def resolve_sheet_paths(table: pd.DataFrame, sheet: Path, where: str) -> str:
    """Resolve the cohort sheet's relative paths in place; return what they are relative to.

    Relative paths are relative to the sheet's folder. A sheet whose relative paths name
    files that exist only relative to the working directory (the rule before; none only
    relative to the sheet's folder) is read the old way, with a warning saying how to
    rewrite it; a sheet that mixes the two stops.

    Raises:
        InputError: some paths exist only relative to the sheet's folder, others only
            relative to the working directory.
    """
    folder = sheet.parent
    cells = [
        (index, column, value)
        for column in PATH_COLUMNS
        for index, value in table[column].items()
        if value and not os.path.isabs(value)
    ]
    sheet_only = [v for _, _, v in cells if (folder / v).exists() and not Path(v).exists()]
    cwd_only = [v for _, _, v in cells if Path(v).exists() and not (folder / v).exists()]
    here = f"the cohort sheet's folder '{folder.absolute()}'"
    if cwd_only and sheet_only:
        raise InputError(
            where,
            f"some relative paths are relative to the sheet's folder ({', '.join(sheet_only)}) "
            f"and others to the working directory ({', '.join(cwd_only)})",
            f"write every relative path relative to {here}",
        )
    if cwd_only:
        log.warning(
            "%s: its relative paths (e.g. '%s') are relative to the working directory, not to "
            "the sheet's folder '%s'; they are read that way for now. Fix: write them relative "
            "to the sheet's folder (e.g. '%s') or as absolute paths",
            where,
            cwd_only[0],
            folder,
            os.path.relpath(cwd_only[0], folder),
        )
        return f"the working directory '{Path.cwd()}' (an old-style sheet)"
    for index, column, value in cells:
        table.loc[index, column] = os.path.normpath(folder / value)
    return here


def load_slides(
    path: str | os.PathLike[str],
    schema: str | os.PathLike[str],
    *,
    allow_unusual_mpp: bool = False,
) -> pd.DataFrame:
    """Read and validate one cohort's slide table; resolve paths against its folder.

    ``path`` is resolved; ``path_as_written`` keeps the table's text for messages. ``mpp``
    values must be plain numbers in um/px (empty = unknown) within
    :data:`histoprog.resolution.PLAUSIBLE_MPP` unless ``allow_unusual_mpp``.

    Raises:
        InputError: a value that does not parse (naming the slide, value and fix), an
            implausible ``mpp``, a schema violation or duplicated slide ids.
    """
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
    table["mpp"] = [
        _sheet_mpp(value, f"{where}, slide '{slide}', column 'mpp'")
        for slide, value in zip(table["slide_id"], table["mpp"], strict=True)
    ]
    validate_table(table, schema, where)
    require_unique(table, "slide_id", where)
    for slide, mpp in zip(table["slide_id"], table["mpp"], strict=True):
        if mpp == mpp:
            check_sheet_mpp(mpp, f"{where}, slide '{slide}', column 'mpp'", allow_unusual_mpp)
    folder = Path(path).parent
    table["path_as_written"] = table["path"]
    table["path"] = [
        os.path.normpath(folder / p) if not os.path.isabs(p) else p for p in table["path"]
    ]
    return table.set_index("slide_id", drop=False)


def _sheet_mpp(value: object, where: str) -> float:
    """A slide table's ``mpp`` cell as a float (NaN when empty); a bad value stops."""
    try:
        number = parse_number(value, unit="um/px")
    except BadValue as err:
        raise InputError(where, f"value {err.value!r} {err.problem}", err.fix) from None
    return float("nan") if number is None else number


def load_clinical(
    path: str | os.PathLike[str],
    schema: str | os.PathLike[str],
    config: Mapping[str, Any],
    pipeline: str,
    role: str,
    outcome_optional: bool = False,
) -> ClinicalCheck:
    """Read a clinical table and check every value of the columns the run uses.

    The columns and their kinds come from :func:`histoprog.clinical_values.run_columns`.
    With ``outcome_optional`` (a cohort scored with a model bundle), a table with neither
    outcome column needs only ``patient_id``: the cohort is scored, not analysed.

    Returns:
        The table and its patients with missing values (for ``exclusions.tsv``).

    Raises:
        InputError: a missing or duplicated ``patient_id``, a missing column, a value that
            does not parse (naming the patient, column, value and fix), a missing outcome.
    """
    where = f"clinical table '{path}'"
    table = read_table(path, "clinical table")
    require_columns(table, ["patient_id"], where, "add a patient_id column")
    validate_table(table, schema, where)
    require_unique(table, "patient_id", where)
    outcome = config["clinical"][pipeline]
    if outcome_optional and not {outcome["time"], outcome["event"]} & set(table.columns):
        return check_values(table, (), where)
    columns = run_columns(config, pipeline, role, list(table.columns))
    return check_values(table, columns, where)
