"""Feature tables (``sof.tsv`` or a user's per-patient table) joined with clinical tables.

* :func:`sof_table` assembles a cohort's ``sof.tsv`` (contract in results/README.md) from the
  per-slide records written by ``histoprog sof``.
* :func:`read_clinical` and :func:`read_features` read and check the two tables; every
  problem is an :class:`~histoprog.errors.InputError` naming the file, column and patients.
* :func:`load_cohort` joins them per patient. Patients are never dropped silently: each
  one left out is a row of the cohort's ``exclusions`` table (cohort, patient_id, step,
  reason).

A feature table with a ``status`` column (``sof.tsv``) only uses rows with status ``ok``;
one with a ``slide_id`` column may have several slides per patient, whose features are
averaged (mean over the patient's ``ok`` slides).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from histoprog.errors import InputError
from histoprog.sheets import read_table, require_columns
from histoprog.sof import QC_COLUMNS, sof_columns

__all__ = [
    "EXCLUSION_COLUMNS",
    "Cohort",
    "exclusions",
    "incomplete_rows",
    "sof_table",
    "read_clinical",
    "read_features",
    "load_cohort",
]

EXCLUSION_COLUMNS: tuple[str, ...] = ("cohort", "patient_id", "step", "reason")
"""Columns of an exclusions table."""

NON_FEATURE_COLUMNS: frozenset[str] = frozenset(("patient_id", "slide_id", *QC_COLUMNS))
"""Columns of a feature table that are never features."""


def exclusions(
    cohort: str, ids: Sequence[object], step: str, reasons: str | Sequence[str]
) -> pd.DataFrame:
    """An exclusions table: one row per patient left out at ``step`` and why."""
    ids = [str(i) for i in ids]
    if isinstance(reasons, str):
        reasons = [reasons] * len(ids)
    return pd.DataFrame(
        {"cohort": cohort, "patient_id": ids, "step": step, "reason": list(reasons)},
        columns=list(EXCLUSION_COLUMNS),
    )


def incomplete_rows(
    cohort: str,
    data: pd.DataFrame,
    columns: Sequence[str],
    step: str,
    prefix: str = "missing ",
    label: Callable[[str], str] = str,
) -> tuple[pd.Series, pd.DataFrame]:
    """The rows with every one of ``columns``, and exclusion rows for the others.

    Returns:
        (boolean mask of the complete rows; exclusions at ``step`` whose reason is
        ``prefix`` and the labels of the missing columns, comma-separated).
    """
    complete = data[list(columns)].notna().all(axis=1)
    reasons = [
        prefix + ", ".join(label(c) for c in columns if pd.isna(r[c]))
        for _, r in data[~complete].iterrows()
    ]
    return complete, exclusions(cohort, data.loc[~complete, "patient_id"], step, reasons)


def sof_table(records: Sequence[Mapping[str, object]]) -> pd.DataFrame:
    """A cohort's ``sof.tsv`` from per-slide records, in the contract's column order.

    Args:
        records: one mapping per slide with ``slide_id``, ``patient_id``, ``status`` and,
            where computed, the SOF and QC values (missing values become NaN; a failed
            slide has status ``failed`` and no features).

    Returns:
        ``slide_id``, ``patient_id``, :func:`histoprog.sof.sof_columns`, ``n_tiles``,
        ``n_tissue``, ``tumour_region_tiles``, ``status``; one row per record, in order.
    """
    cols = ["slide_id", "patient_id", *sof_columns(), *QC_COLUMNS]
    rows = [{c: rec.get(c, np.nan) for c in cols} for rec in records]
    table = pd.DataFrame(rows, columns=cols)
    for c in sof_columns():
        table[c] = table[c].astype(float)
    for c in ("n_tiles", "n_tissue", "tumour_region_tiles"):
        table[c] = table[c].astype("Int64")
    return table


def _where(kind: str, path: str | os.PathLike[str], cohort: str) -> str:
    return f"{kind} '{path}' (cohort '{cohort}')"


def read_clinical(
    path: str | os.PathLike[str],
    cohort: str,
    time: str,
    event: str,
    outcome_optional: bool = False,
) -> pd.DataFrame:
    """Read a clinical table and check ids, outcome columns, times and events.

    With ``outcome_optional`` (a cohort scored with a model bundle) a table with neither
    outcome column is returned without them; one of the two alone is still an error.

    Raises:
        InputError: a missing file or column (listing the columns present), duplicated or
            missing patient ids, non-numeric/missing/negative times, events other than 0/1
            (naming the patients).
    """
    where = _where("clinical table", path, cohort)
    table = read_table(path, "clinical table")
    if outcome_optional and not {time, event} & set(table.columns):
        require_columns(table, ["patient_id"], where, "add a patient_id column")
        _check_ids(table, where)
        return table
    require_columns(
        table,
        ["patient_id", time, event],
        where,
        "add the column, or name the outcome columns in config.yaml under clinical.crlm",
    )
    _check_ids(table, where)
    # histoprog.survival imports lifelines and every statistic: not at sof_table's start
    from histoprog.survival._data import check_time_event

    try:
        t, e = check_time_event(table, time, event, id_col="patient_id")
    except InputError as err:
        raise InputError(f"{where}, {err.what}", err.problem, err.fix) from None
    table[time] = t
    table[event] = e.astype(int)
    return table


def _check_ids(table: pd.DataFrame, where: str) -> None:
    """Fail on missing or duplicated patient ids."""
    from histoprog.survival._data import format_ids

    if table["patient_id"].isna().any():
        rows = (np.flatnonzero(table["patient_id"].isna()) + 2).tolist()
        raise InputError(
            where, f"missing patient_id in line(s) {format_ids(rows)}", "fill in every patient_id"
        )
    dup = table.loc[table["patient_id"].duplicated(keep=False), "patient_id"]
    if not dup.empty:
        raise InputError(
            where,
            f"duplicated patient_id values {format_ids(sorted(set(dup)))}",
            "give one row per patient",
        )


def _feature_names(table: pd.DataFrame, features: Sequence[str] | None, where: str) -> list[str]:
    """The feature columns: configured, else the SOF columns, else all non-id columns."""
    if features is not None:
        require_columns(
            table, list(features), where, "correct config key crlm.features or the table header"
        )
        return list(features)
    if all(c in table.columns for c in sof_columns()):
        return sof_columns()
    names = [c for c in table.columns if c not in NON_FEATURE_COLUMNS]
    if not names:
        raise InputError(
            where,
            "has no feature columns (only patient_id / slide_id / QC columns)",
            "add one numeric column per feature",
        )
    return names


def read_features(
    path: str | os.PathLike[str], cohort: str, features: Sequence[str] | None = None
) -> tuple[pd.DataFrame, list[str], pd.DataFrame]:
    """Read a feature table and reduce it to one row per patient.

    Args:
        path: ``sof.tsv`` or a per-patient table (``patient_id`` + numeric features).
        cohort: cohort name, for messages and exclusions.
        features: the feature columns (default: the SOF columns when all are present,
            else every column other than patient_id, slide_id and QC columns).

    Returns:
        (table with ``patient_id`` + features, feature names, exclusions of patients
        whose slides all have a status other than ``ok``).

    Raises:
        InputError: missing file or columns, non-numeric feature values (naming the
            patients), or a duplicated patient_id in a table without ``slide_id``.
    """
    from histoprog.survival._data import format_ids

    where = _where("feature table", path, cohort)
    table = read_table(path, "feature table")
    require_columns(
        table, ["patient_id"], where, "add a patient_id column matching the clinical table"
    )
    names = _feature_names(table, features, where)
    if table["patient_id"].isna().any():
        _check_ids(table, where)
    for c in names:
        values = table[c]
        if values.dtype == bool:
            table[c] = values.astype(float)
            continue
        num = pd.to_numeric(values, errors="coerce")
        bad = num.isna() & values.notna()
        if bad.any():
            raise InputError(
                f"column '{c}' of {where}",
                f"non-numeric feature values {values[bad].astype(str).unique()[:3].tolist()} "
                f"(patients {format_ids(table.loc[bad, 'patient_id'].tolist())})",
                "features must be numbers; use NA (empty) for a missing value",
            )
        table[c] = num.astype(float)
    excluded = exclusions(cohort, [], "input", [])
    if "status" in table.columns:
        status = table["status"].astype(str)
        ok = status == "ok"
        lost = sorted(set(table.loc[~ok, "patient_id"]) - set(table.loc[ok, "patient_id"]))
        if lost:
            bad_rows = table[table["patient_id"].isin(lost)]
            label = bad_rows["slide_id"] if "slide_id" in bad_rows else bad_rows["patient_id"]
            reasons = (
                pd.Series(label.astype(str) + ": " + status[bad_rows.index])
                .groupby(bad_rows["patient_id"].to_numpy())
                .agg(", ".join)
            )
            excluded = exclusions(
                cohort,
                lost,
                "input",
                [f"no slide with status ok ({reasons[p]})" for p in lost],
            )
        table = table[ok]
    if "slide_id" in table.columns:
        table = table.groupby("patient_id", sort=False, as_index=False)[names].mean()
    else:
        _check_ids(table, where)
    return table[["patient_id", *names]].reset_index(drop=True), names, excluded


@dataclass(frozen=True)
class Cohort:
    """One cohort's analysis table.

    Attributes:
        name: cohort name.
        role: ``discovery`` or ``validation``.
        data: one row per patient: ``patient_id``, the clinical columns, the features.
        features: the feature column names.
        exclusions: patients left out so far (``EXCLUSION_COLUMNS``).
        has_outcome: false for a cohort without outcome columns (scored, not analysed).
    """

    name: str
    role: str
    data: pd.DataFrame
    features: tuple[str, ...]
    exclusions: pd.DataFrame
    has_outcome: bool = True


def load_cohort(
    name: str,
    role: str,
    features_path: str | os.PathLike[str],
    clinical_path: str | os.PathLike[str],
    time: str,
    event: str,
    features: Sequence[str] | None = None,
    outcome_optional: bool = False,
) -> Cohort:
    """Read, check and join a cohort's feature and clinical tables (inner join on patient).

    Patients with features but no clinical row, and clinical rows without features (or
    whose slides all failed), are recorded in ``exclusions``. ``outcome_optional``: see
    :func:`read_clinical`.

    Raises:
        InputError: see :func:`read_clinical` and :func:`read_features`; a column in both
            tables; no patient in common.
    """
    if role not in ("discovery", "validation"):
        raise InputError(
            f"cohort '{name}'", f"role {role!r} is not analysed", "use discovery or validation"
        )
    clinical = read_clinical(clinical_path, name, time, event, outcome_optional)
    feats, names, excluded = read_features(features_path, name, features)
    both = sorted(set(names) & (set(clinical.columns) - {"patient_id"}))
    if both:
        raise InputError(
            _where("feature table", features_path, name),
            f"column(s) {both} are also in the clinical table '{clinical_path}'",
            "rename them in one of the two tables",
        )
    have_feat = set(feats["patient_id"])
    have_clin = set(clinical["patient_id"])
    parts = [excluded]
    no_clin = sorted(have_feat - have_clin)
    if no_clin:
        parts.append(exclusions(name, no_clin, "input", "no row in the clinical table"))
    no_feat = sorted(have_clin - have_feat - set(excluded["patient_id"]))
    if no_feat:
        parts.append(exclusions(name, no_feat, "input", "no row in the feature table"))
    data = clinical.merge(feats, on="patient_id", how="inner", sort=False)
    if data.empty:
        raise InputError(
            f"cohort '{name}'",
            f"no patient_id is in both '{features_path}' and '{clinical_path}'",
            "check that both tables use the same patient ids",
        )
    excl = pd.concat([p for p in parts if not p.empty] or [parts[0]], ignore_index=True)
    return Cohort(name, role, data, tuple(names), excl, time in data.columns)
