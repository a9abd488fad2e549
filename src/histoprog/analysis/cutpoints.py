"""Cutpoints of continuous features (METHODS 5.2) and the features dichotomised at them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from histoprog.analysis.outcome import Outcome
from histoprog.errors import InputError
from histoprog.survival import maxstat_cutpoint

__all__ = ["CUTPOINT_COLUMNS", "HIGH_SUFFIX", "binarise", "cutpoint_table"]

HIGH_SUFFIX = "_high"
"""Suffix of a dichotomised feature column: ``<feature>_high`` = value > cutpoint."""

CUTPOINT_COLUMNS: tuple[str, ...] = (
    "feature",
    "cutpoint",
    "statistic",
    "p_lau94",
    "n",
    "n_low",
    "n_high",
    "n_candidates",
    "status",
    "reason",
)
"""Columns of :func:`cutpoint_table`."""


def cutpoint_table(
    data: pd.DataFrame, outcome: Outcome, features: Sequence[str], minprop: float
) -> pd.DataFrame:
    """Maxstat log-rank cutpoint of every feature (survminer ``surv_cutpoint``).

    A feature that is all missing, constant or has no cutpoint with ``minprop`` of the
    patients on each side is not an error: its row has ``status`` ``skipped`` and the
    reason, and it takes no further part.

    Returns:
        One row per feature (:data:`CUTPOINT_COLUMNS`): feature, cutpoint, statistic,
        p_lau94, n, n_low, n_high, n_candidates, status (``ok``/``skipped``), reason.
    """
    t = data[outcome.time].to_numpy(float)
    e = data[outcome.event].to_numpy(float)
    rows = []
    for f in features:
        x = data[f].to_numpy(float)
        finite = x[np.isfinite(x)]
        row: dict[str, Any] = {"feature": f, "n": len(finite), "status": "skipped"}
        if finite.size == 0:
            row["reason"] = "all values missing"
        elif np.all(finite == finite[0]):
            row["reason"] = f"constant ({finite[0]:g}) in all {finite.size} patients"
        else:
            try:
                res = maxstat_cutpoint(t, e, x, feature=f, minprop=minprop, maxprop=1 - minprop)
            except InputError as err:
                row["reason"] = err.problem
            else:
                row = {**res.summary.iloc[0].to_dict(), "status": "ok", "reason": ""}
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=list(CUTPOINT_COLUMNS))


def binarise(data: pd.DataFrame, cutpoints: Mapping[str, float]) -> pd.DataFrame:
    """``<feature>_high`` = 1 if value > cutpoint, 0 if not, NaN if the value is missing."""
    out = {}
    for f, cut in cutpoints.items():
        x = data[f].to_numpy(float)
        out[f + HIGH_SUFFIX] = np.where(np.isfinite(x), (x > cut).astype(float), np.nan)
    return pd.DataFrame(out, index=data.index)
