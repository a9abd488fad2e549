"""Input checks shared by the survival modules.

Every check raises :class:`histoprog.errors.InputError` naming the column and, where rows
are at fault, the patient ids affected (the ``id_col`` column, else the DataFrame index).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from histoprog.errors import InputError

_MAX_IDS = 10


def format_ids(ids: Sequence[object]) -> str:
    """Return up to ten ids as a comma-separated string, with a count of the rest."""
    ids = [str(i) for i in ids]
    shown = ", ".join(ids[:_MAX_IDS])
    if len(ids) > _MAX_IDS:
        shown += f" and {len(ids) - _MAX_IDS} more"
    return shown


def _ids(data: pd.DataFrame, id_col: str | None, mask: np.ndarray) -> str:
    labels = data[id_col] if id_col is not None and id_col in data else data.index
    return format_ids(list(np.asarray(labels)[mask]))


def _numeric(data: pd.DataFrame, col: str, role: str) -> np.ndarray:
    if col not in data.columns:
        raise InputError(
            f"column '{col}'",
            f"the {role} column is not in the table (columns: {format_ids(list(data.columns))})",
            "check the column name in the config",
        )
    values = data[col]
    if values.dtype == bool:
        return values.to_numpy(dtype=float)
    if not pd.api.types.is_numeric_dtype(values):
        converted = pd.to_numeric(values, errors="coerce")
        bad = converted.isna().to_numpy() & values.notna().to_numpy()
        raise InputError(
            f"column '{col}'",
            f"the {role} must be numeric but has non-numeric values "
            f"(e.g. {values[bad].astype(str).unique()[:3].tolist()})",
            "recode it as numbers (e.g. 0/1 dummies for a categorical factor)",
        )
    return values.to_numpy(dtype=float)


def check_time_event(
    data: pd.DataFrame, time: str, event: str, id_col: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(time, event)`` arrays after checking them.

    Raises:
        InputError: missing or negative times, events other than 0/1, or no events.
    """
    t = _numeric(data, time, "survival time")
    e = _numeric(data, event, "event indicator")
    bad = ~np.isfinite(t)
    if bad.any():
        raise InputError(
            f"column '{time}'",
            f"{bad.sum()} missing or infinite survival times (patients {_ids(data, id_col, bad)})",
            "fill in the follow-up time or drop these patients before the analysis",
        )
    bad = t < 0
    if bad.any():
        raise InputError(
            f"column '{time}'",
            f"{bad.sum()} negative survival times (patients {_ids(data, id_col, bad)})",
            "survival times must be >= 0; check the date arithmetic",
        )
    bad = ~np.isin(e, (0.0, 1.0))
    if bad.any():
        raise InputError(
            f"column '{event}'",
            f"the event indicator must be 0 (censored) or 1 (event); "
            f"{bad.sum()} other or missing values (patients {_ids(data, id_col, bad)})",
            "recode the event column as 0/1",
        )
    if e.sum() == 0:
        raise InputError(
            f"column '{event}'",
            "there are no events (all patients censored)",
            "check the event coding (1 = event) or the cohort",
        )
    return t, e.astype(np.int8)


@dataclass(frozen=True)
class SurvivalData:
    """Checked arrays: ``time``, ``event`` (0/1), covariate matrix ``x`` and row ``ids``."""

    time: np.ndarray
    event: np.ndarray
    x: np.ndarray
    covariates: tuple[str, ...]
    ids: np.ndarray
    strata: np.ndarray | None = None


def check_survival_data(
    data: pd.DataFrame,
    time: str,
    event: str,
    covariates: Sequence[str],
    *,
    id_col: str | None = None,
    strata: str | None = None,
    missing: str = "raise",
    min_events: int | None = None,
) -> SurvivalData:
    """Check and extract survival data for a regression on ``covariates``.

    Args:
        data: one row per patient.
        time: column of follow-up times (>= 0).
        event: column of 0/1 event indicators.
        covariates: numeric covariate columns.
        id_col: column of patient ids used in messages (default: the index).
        strata: optional column whose values define strata.
        missing: ``"raise"`` (default) or ``"drop"`` rows with a missing covariate
            (``"drop"`` is R's ``na.omit``).
        min_events: fewest events allowed (default: number of covariates + 1, at least 2).

    Raises:
        InputError: non-numeric, all-missing or constant covariates, missing covariate values
            (with ``missing="raise"``), bad times or events, or too few events.
    """
    if isinstance(data, pd.DataFrame) is False:
        raise InputError("input table", "is not a pandas DataFrame", "pass a DataFrame")
    covariates = tuple(covariates)
    if len(set(covariates)) != len(covariates):
        raise InputError(
            "covariates", f"duplicated names in {list(covariates)}", "list each column once"
        )
    if missing not in ("raise", "drop"):
        raise InputError("missing", f"unknown value {missing!r}", "use 'raise' or 'drop'")
    cols = [_numeric(data, c, "covariate") for c in covariates]
    x = np.column_stack(cols) if cols else np.empty((len(data), 0))
    keep = np.ones(len(data), dtype=bool)
    for j, c in enumerate(covariates):
        nan = ~np.isfinite(x[:, j])
        if nan.all():
            raise InputError(f"column '{c}'", "all values are missing", "drop this covariate")
        if nan.any():
            if missing == "raise":
                raise InputError(
                    f"column '{c}'",
                    f"{nan.sum()} missing values (patients {_ids(data, id_col, nan)})",
                    "impute or drop these patients, or pass missing='drop'",
                )
            keep &= ~nan
    sub = data.loc[keep] if not keep.all() else data
    t, e = check_time_event(sub, time, event, id_col)
    x = x[keep]
    for j, c in enumerate(covariates):
        if x.shape[0] and np.all(x[:, j] == x[0, j]):
            raise InputError(
                f"column '{c}'",
                f"is constant ({x[0, j]:g}) in all {x.shape[0]} analysed patients",
                "drop this covariate; a constant has no hazard ratio",
            )
    need = max(2, len(covariates) + 1) if min_events is None else min_events
    if e.sum() < need:
        raise InputError(
            f"column '{event}'",
            f"only {int(e.sum())} events for {len(covariates)} covariates (need >= {need})",
            "use fewer covariates or a cohort with more events",
        )
    st = None
    if strata is not None:
        if strata not in sub.columns:
            raise InputError(f"column '{strata}'", "the strata column is not in the table", "")
        st_raw = sub[strata]
        if st_raw.isna().any():
            bad = st_raw.isna().to_numpy()
            raise InputError(
                f"column '{strata}'",
                f"missing strata (patients {_ids(sub, id_col, bad)})",
                "fill in the stratum or drop these patients",
            )
        st = pd.factorize(st_raw, sort=True)[0]
    labels = sub[id_col] if id_col is not None and id_col in sub else sub.index
    return SurvivalData(t, e, x, covariates, np.asarray(labels), st)
