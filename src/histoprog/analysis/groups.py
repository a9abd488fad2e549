"""Survival of patient groups in one cohort: KM per group, log-rank and Cox HR per pair."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import pandas as pd

from histoprog.analysis.cox_tables import cox_or_none
from histoprog.analysis.outcome import Outcome
from histoprog.errors import InputError
from histoprog.survival import KMResult, kaplan_meier, logrank
from histoprog.survival.cox import SINGULAR

__all__ = ["TEST_COLUMNS", "GroupSurvival", "group_survival"]

TEST_COLUMNS: tuple[str, ...] = (
    "cohort",
    "analysis",
    "subset",
    "comparison",
    "groups",
    "group_a",
    "group_b",
    "n",
    "chisq",
    "df",
    "p",
    "hr",
    "hr_lower",
    "hr_upper",
    "p_wald",
    "note",
)
"""Columns of :attr:`GroupSurvival.tests`."""


@dataclass(frozen=True)
class GroupSurvival:
    """KM curves, per-group summaries and tests of one grouping in one cohort."""

    cohort: str
    analysis: str
    subset: str
    curves: dict[str, KMResult]
    groups: pd.DataFrame
    tests: pd.DataFrame


def _group_rows(
    sub: pd.DataFrame,
    outcome: Outcome,
    group: str,
    labels: Sequence[str],
    at: float,
    key: dict[str, str],
) -> tuple[dict[str, KMResult], pd.DataFrame]:
    """KM curve (groups with an event) and summary row of every group."""
    curves: dict[str, KMResult] = {}
    rows = []
    for lab in labels:
        g = sub[sub[group] == lab]
        row: dict[str, Any] = {
            **key,
            "group": lab,
            "n": len(g),
            "events": int(g[outcome.event].sum()),
        }
        if len(g) and g[outcome.event].sum() > 0:
            km = kaplan_meier(g, outcome.time, outcome.event, label=f"{lab} (n={len(g)})")
            curves[str(lab)] = km
            sv = km.at([at]).iloc[0]
            row.update(median=km.median, median_lower=km.median_lower, median_upper=km.median_upper)
            row.update(
                {
                    f"surv_{at:g}": sv["surv"],
                    f"surv_{at:g}_lower": sv["lower"],
                    f"surv_{at:g}_upper": sv["upper"],
                }
            )
        rows.append(row)
    cols = [
        *key,
        "group",
        "n",
        "events",
        "median",
        "median_lower",
        "median_upper",
        f"surv_{at:g}",
        f"surv_{at:g}_lower",
        f"surv_{at:g}_upper",
    ]
    return curves, pd.DataFrame(rows).reindex(columns=cols)


def _test_row(d: pd.DataFrame, outcome: Outcome, group: str, labs: Sequence[str]) -> dict:
    """Log-rank of ``labs`` and, for two groups, the Cox HR of the second vs the first."""
    row: dict[str, Any] = {}
    try:
        lr = logrank(d, outcome.time, outcome.event, group)
        row.update(chisq=lr.chisq, df=lr.df, p=lr.p)
        if len(labs) == 2:
            d = d.assign(_b=(d[group] == labs[1]).astype(float))
            fit = cox_or_none(d, outcome, ["_b"], with_concordance=False)
            if fit is None:
                raise InputError("Cox model", SINGULAR, "")
            lo, hi = fit.hr_ci()
            row.update(hr=fit.hr[0], hr_lower=lo[0], hr_upper=hi[0], p_wald=fit.p_wald[0])
    except InputError as err:
        row["note"] = err.problem
    return row


def group_survival(
    table: pd.DataFrame,
    outcome: Outcome,
    group: str,
    labels: Sequence[str],
    survival_at: float,
    *,
    cohort: str,
    analysis: str,
    subset: str = "all",
) -> GroupSurvival:
    """KM per group, overall log-rank and, for each pair of groups, log-rank and Cox HR.

    Groups are the values of ``group`` in ``labels`` order (rows with other values or
    missing are not used). A test that cannot be done (a group empty, no events) gets
    NaN and a ``note`` instead of an error, so a small subgroup never stops the analysis.

    Returns:
        A :class:`GroupSurvival`; ``groups`` rows: cohort, analysis, subset, group, n,
        events, median (+ CI), surv_<survival_at>, surv_<survival_at>_lower/_upper;
        ``tests`` rows (:data:`TEST_COLUMNS`): cohort, analysis, subset, comparison, groups,
        group_a, group_b, n, chisq, df, p, hr, hr_lower, hr_upper, p_wald, note (``hr`` =
        hazard of group_b vs group_a).
    """
    key = {"cohort": cohort, "analysis": analysis, "subset": subset}
    sub = table[table[group].isin(labels)]
    curves, groups = _group_rows(sub, outcome, group, labels, survival_at, key)
    comps: list[tuple[str, list[str]]] = []
    if len(labels) > 2:
        comps.append(("overall", list(labels)))
    two = "pairwise" if len(labels) > 2 else "two-group"
    comps += [(two, [a, b]) for a, b in combinations(labels, 2)]
    rows = []
    for comp, labs in comps:
        d = sub[sub[group].isin(labs)]
        row = {
            **key,
            "comparison": comp,
            "group_a": labs[0] if len(labs) == 2 else "",
            "group_b": labs[-1] if len(labs) == 2 else "",
            "groups": "|".join(map(str, labs)),
            "n": len(d),
            "note": "",
        }
        rows.append({**row, **_test_row(d, outcome, group, labs)})
    tests = pd.DataFrame(rows).reindex(columns=list(TEST_COLUMNS))
    return GroupSurvival(cohort, analysis, subset, curves, groups, tests)
