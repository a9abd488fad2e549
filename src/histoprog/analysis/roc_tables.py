"""Time-dependent ROC of several markers in one cohort: AUC tables and paired comparisons.

Markers are given as ``{name: column}``; higher values must mean higher risk. Each marker
is computed on the rows where it has a value; give a table without missing markers to get
paired comparisons.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np
import pandas as pd

from histoprog.analysis.outcome import Outcome
from histoprog.survival import TimeROCResult, compare_auc, time_roc

__all__ = [
    "COMPARE_COLUMNS",
    "LATE_NOTE",
    "auc_table",
    "compare_table",
    "curve_times",
    "late_table",
    "marker_roc",
    "split_times",
]

COMPARE_COLUMNS: tuple[str, ...] = (
    "marker_a",
    "marker_b",
    "time",
    "delta_auc",
    "se_delta",
    "z",
    "p",
)
"""Columns of :func:`compare_table`."""

LATE_NOTE = "beyond the follow-up"
"""Note of a time at or beyond the last follow-up (no controls there: not computed)."""


def split_times(times: Sequence[float], follow_up: np.ndarray) -> tuple[list, list]:
    """(times before the last follow-up, times at or beyond it)."""
    last = float(np.max(follow_up))
    return [u for u in times if u < last], [u for u in times if u >= last]


def marker_roc(
    data: pd.DataFrame, outcome: Outcome, markers: Mapping[str, str], times: Sequence[float]
) -> dict[str, TimeROCResult]:
    """AUC(t) of every marker at ``times``, each on the rows where it has a value."""
    out = {}
    for name, column in markers.items():
        d = data.dropna(subset=[column])
        out[name] = time_roc(d[outcome.time], d[outcome.event], d[column], times, name=name)
    return out


def auc_table(results: Mapping[str, TimeROCResult]) -> pd.DataFrame:
    """One row per marker and time: the ``time_roc`` summary columns, n, note (empty)."""
    rows = [r.summary.assign(n=r.n, note="") for r in results.values()]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def late_table(markers: Sequence[str], late: Sequence[float], n: int) -> pd.DataFrame:
    """Rows of the times at or beyond the last follow-up: marker, time, n, note."""
    rows = [
        pd.DataFrame({"marker": list(markers), "time": u, "n": n, "note": LATE_NOTE}) for u in late
    ]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def compare_table(results: Mapping[str, TimeROCResult]) -> pd.DataFrame:
    """``timeROC::compare`` of every pair of markers (:data:`COMPARE_COLUMNS`)."""
    comps = [compare_auc(results[a], results[b]) for a, b in combinations(results, 2)]
    if not comps:
        return pd.DataFrame(columns=list(COMPARE_COLUMNS))
    return pd.concat(comps, ignore_index=True)


def curve_times(follow_up: np.ndarray, step: float, horizon: float | None) -> np.ndarray:
    """Grid of AUC-curve times: every ``step`` months up to the 90 % follow-up quantile.

    The grid also stops at the horizon and before the last follow-up time.
    """
    top = min(float(np.quantile(follow_up, 0.9)), float(horizon or np.inf))
    grid = np.arange(step, top + 1e-9, step)
    return grid[grid < np.max(follow_up)]
