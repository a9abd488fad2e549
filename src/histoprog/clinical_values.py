"""Every value of the clinical columns a run uses, checked before any job starts.

The columns come from the configuration (:func:`run_columns`); each has a kind:

==========  ==============================================  =========================
kind        accepted values                                 a missing value
==========  ==============================================  =========================
time        a number >= 0 (outcome time)                    stops the run
event       0 or 1 (outcome event)                          stops the run
binary      0 or 1 (CRS node status, chemotherapy)          listed per patient
numeric     a number (CRS components, HCC thresholds)       listed per patient
score       a whole number 0-5 (given CRS points)           listed per patient
factor      numbers, or text with at most two values        listed per patient
category    anything (HCC factors with a list of levels)    listed per patient
==========  ==============================================  =========================

Missing means what pandas reads as missing (see :mod:`histoprog.sheet_values`). A value
that does not parse stops the run with an :class:`~histoprog.errors.InputError` naming
the file, the column and what uses it, the patients and values, and the fix. Missing
values the analysis can live with (it leaves the patient out of the models that need the
value) come back in :attr:`ClinicalCheck.missing`, one row per patient, for
``exclusions.tsv``; a missing outcome stops the run, as the survival analysis cannot use
the patient at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from histoprog.analysis.crs import CRSColumns
from histoprog.errors import InputError
from histoprog.sheet_values import BadValue, parse_binary, parse_number

__all__ = ["ClinicalKind", "ClinicalColumn", "ClinicalCheck", "run_columns", "check_values"]

ClinicalKind = Literal["time", "event", "binary", "numeric", "score", "factor", "category"]

ANALYSED_CRLM_ROLES = ("discovery", "validation")
"""CRLM cohort roles whose clinical factors and CRS the analysis uses."""


@dataclass(frozen=True)
class ClinicalColumn:
    """One clinical column the run uses.

    Attributes:
        name: the column header.
        kind: what values it may hold (table in the module docstring).
        use: what uses it, for messages (e.g. ``"outcome time, clinical.crlm.time"``).
        required: the run stops when the table lacks the column.
    """

    name: str
    kind: ClinicalKind
    use: str
    required: bool = True


@dataclass(frozen=True)
class ClinicalCheck:
    """A checked clinical table and its patients with missing values.

    Attributes:
        table: the table as read.
        missing: ``patient_id`` and ``reason`` (the columns without a value), one row per
            patient with a missing value the analysis can live with.
    """

    table: pd.DataFrame
    missing: pd.DataFrame


def run_columns(
    config: Mapping[str, Any], pipeline: str, role: str, header: Sequence[str]
) -> tuple[ClinicalColumn, ...]:
    """The clinical columns a cohort of ``pipeline`` and ``role`` uses under ``config``.

    Args:
        config: the workflow configuration (schema defaults filled in).
        pipeline: ``crlm`` or ``hcc``.
        role: the cohort's role; CRLM cohorts outside :data:`ANALYSED_CRLM_ROLES` only
            need the outcome.
        header: the table's columns (the CRS is read from the given points when the table
            has that column, else from its five components).
    """
    outcome = config["clinical"][pipeline]
    cols = [
        ClinicalColumn(outcome["time"], "time", f"outcome time, clinical.{pipeline}.time"),
        ClinicalColumn(outcome["event"], "event", f"outcome event, clinical.{pipeline}.event"),
    ]
    if pipeline == "hcc":
        factors = config.get("hcc", {}).get("analysis", {}).get("clinical_factors", {})
        return _merged([*cols, *_hcc_factors(factors)])
    if role not in ANALYSED_CRLM_ROLES:
        return tuple(cols)
    crlm = config.get("crlm", {})
    factors = list(crlm.get("clinical_factors", ()))
    cols += [
        ClinicalColumn(f, "factor", "clinical factor, crlm.clinical_factors")
        for f in factors
        if f != "crs_high"
    ]
    cols += _crs_columns(CRSColumns.from_mapping(crlm.get("crs")), "crs_high" in factors, header)
    cols += [
        ClinicalColumn(crlm[key], "binary", f"chemotherapy, crlm.{key}", required=False)
        for key in ("preop_chemo", "adjuvant_chemo")
        if crlm.get(key)
    ]
    return _merged(cols)


_STRICTNESS: tuple[ClinicalKind, ...] = (
    "time",
    "event",
    "binary",
    "score",
    "numeric",
    "factor",
    "category",
)


def _merged(columns: Sequence[ClinicalColumn]) -> tuple[ClinicalColumn, ...]:
    """One entry per column used several ways: the strictest kind, all uses, any required."""
    merged: dict[str, ClinicalColumn] = {}
    for col in columns:
        seen = merged.get(col.name)
        if seen is None:
            merged[col.name] = col
            continue
        merged[col.name] = ClinicalColumn(
            col.name,
            min(seen.kind, col.kind, key=_STRICTNESS.index),
            f"{seen.use}; {col.use}",
            seen.required or col.required,
        )
    return tuple(merged.values())


def _hcc_factors(factors: Mapping[str, Any]) -> list[ClinicalColumn]:
    """HCC factors: null = as is, a number = threshold, a list = levels."""
    use = "clinical factor, hcc.analysis.clinical_factors"
    return [ClinicalColumn(name, _hcc_kind(rule), use) for name, rule in factors.items()]


def _hcc_kind(rule: object) -> ClinicalKind:
    """The kind of an HCC factor column from its rule."""
    if rule is None:
        return "factor"
    return "category" if isinstance(rule, list | tuple) else "numeric"


def _crs_columns(crs: CRSColumns, needed: bool, header: Sequence[str]) -> list[ClinicalColumn]:
    """The given CRS points when the table has them, else the five components."""
    if crs.score in header:
        return [ClinicalColumn(crs.score, "score", "CRS points, crlm.crs.score")]
    why = "needed by crs_high in crlm.clinical_factors" if needed else "optional"
    names = ("node_positive", "dfi_months", "n_metastases", "max_diameter_cm", "cea")
    return [
        ClinicalColumn(
            column,
            "binary" if key == "node_positive" else "numeric",
            f"CRS component, crlm.crs.{key} ({why}; or give the points in column '{crs.score}')",
            required=needed,
        )
        for key, column in zip(names, crs.components(), strict=True)
    ]


def check_values(
    table: pd.DataFrame, columns: Sequence[ClinicalColumn], where: str
) -> ClinicalCheck:
    """Check every value of ``columns`` in a clinical table with ``patient_id``.

    Raises:
        InputError: a required column is absent, a value does not parse (file, column,
            patients, values and the fix), or an outcome value is missing.
    """
    absent = [c for c in columns if c.required and c.name not in table.columns]
    if absent:
        raise InputError(
            where,
            "missing column(s) "
            + "; ".join(f"'{c.name}' ({c.use})" for c in absent)
            + f" (columns present: {', '.join(map(str, table.columns))})",
            "add the column, or name the table's column in config.yaml at the key given",
        )
    ids = table["patient_id"].astype(str)
    gaps: dict[str, list[str]] = {}
    for column in columns:
        if column.name not in table.columns:
            continue
        col_where = f"{where}, column '{column.name}' ({column.use})"
        empty = _check_column(table[column.name], ids, column.kind, col_where)
        if empty.any() and column.kind in ("time", "event"):
            raise InputError(
                col_where,
                f"no value for patient(s) {_ids(ids[empty])}; the survival analysis needs "
                "an outcome for every patient",
                "fill in the value, or remove the patient's row (a patient with slides but "
                "no clinical row is listed in exclusions.tsv)",
            )
        for pid in ids[empty]:
            gaps.setdefault(pid, []).append(f"{column.name} ({column.use})")
    missing = pd.DataFrame(
        {
            "patient_id": list(gaps),
            "reason": ["no value in " + "; ".join(v) for v in gaps.values()],
        },
        columns=["patient_id", "reason"],
    )
    return ClinicalCheck(table, missing)


def _check_column(values: pd.Series, ids: pd.Series, kind: ClinicalKind, where: str) -> pd.Series:
    """Raise on the first kind of bad value; return the mask of missing values."""
    if kind == "category":
        return values.isna()
    if kind == "factor" and not _mostly_numbers(values):
        levels = sorted(values.dropna().astype(str).unique())
        if len(levels) > 2:
            raise InputError(
                where,
                f"is text with {len(levels)} values {levels[:6]}; only two-level text factors "
                "are coded automatically",
                "dummy-code it as 0/1 columns and list those in the config key named, or use "
                "numbers",
            )
        return values.isna()
    parse: Callable[[object], float | None] = {
        "event": parse_binary,
        "binary": parse_binary,
    }.get(kind, parse_number)
    parsed: list[float | None] = []
    bad: list[tuple[str, BadValue]] = []
    for pid, value in zip(ids, values, strict=True):
        try:
            number = parse(value)
        except BadValue as err:
            bad.append((pid, err))
            number = None
        else:
            problem = _range_problem(number, kind)
            if problem:
                bad.append((pid, BadValue(value, problem, _RANGE_FIX[kind])))
        parsed.append(number)
    if bad:
        pid, first = bad[0]
        also = [f"{p} {e.value!r}" for p, e in bad[1:]]
        more = f" (also {_ids(also)})" if also else ""
        raise InputError(
            where, f"value {first.value!r} of patient {pid} {first.problem}{more}", first.fix
        )
    return pd.Series([v is None for v in parsed], index=values.index)


_RANGE_FIX: dict[str, str] = {
    "time": "times must be >= 0; check the date arithmetic",
    "score": "CRS points are whole numbers 0-5; correct the value, or remove the column "
    "to compute the CRS from its components",
}


def _range_problem(number: float | None, kind: ClinicalKind) -> str | None:
    """Why a parsed number is out of range for ``kind``, else None."""
    if number is None:
        return None
    if kind == "time" and number < 0:
        return "is a negative time"
    if kind == "score" and not (number.is_integer() and 0 <= number <= 5):
        return "is not a whole number 0-5"
    return None


def _mostly_numbers(values: pd.Series) -> bool:
    """True when a factor is numeric: a numeric dtype, or at least half its values parse."""
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return True
    present = values.dropna()
    good = 0
    for value in present:
        try:
            parse_number(value)
        except BadValue:
            continue
        good += 1
    return good > 0 and good * 2 >= len(present)


def _ids(items: Sequence[str] | pd.Series) -> str:
    """Up to ten items for a message (imported here: histoprog.survival loads scipy)."""
    from histoprog.survival._data import format_ids

    return format_ids(list(items))
