"""Descriptive statistics of cohorts (METHODS 5.14), on plain per-patient tables.

* :func:`table1`: Table 1 per cohort: medians with IQR for continuous variables, counts
  with % for categorical ones (missing values counted on their own row).
* :func:`followup`: median follow-up by reverse Kaplan-Meier with its 95 % CI.
* :func:`associations`: Pearson r of features vs continuous variables, Wilcoxon rank-sum
  across binary ones; :func:`independence`: chi-squared of a grouping vs other variables.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from histoprog.analysis.outcome import Outcome
from histoprog.errors import InputError
from histoprog.survival import median_followup

__all__ = ["table1", "followup", "associations", "independence", "variable_kind"]


def variable_kind(values: pd.Series) -> str:
    """``continuous`` (numeric, > 2 distinct values), ``binary`` (2) or ``categorical``."""
    v = values.dropna()
    num = pd.to_numeric(v, errors="coerce")
    n_levels = v.nunique()
    if n_levels == 2:
        return "binary"
    if num.notna().all() and n_levels > 2:
        return "continuous"
    return "categorical"


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def _describe(values: pd.Series, name: str, kind: str) -> list[dict[str, str]]:
    """Table 1 rows of one variable in one cohort."""
    n = len(values)
    rows = []
    v = values.dropna()
    if kind == "continuous":
        q1, med, q3 = np.quantile(pd.to_numeric(v).to_numpy(float), [0.25, 0.5, 0.75])
        rows.append(
            {
                "variable": name,
                "level": "",
                "statistic": "median (IQR)",
                "value": f"{_fmt(med)} ({_fmt(q1)}-{_fmt(q3)})",
            }
        )
    else:
        labels = v.map(lambda x: f"{x:g}" if isinstance(x, float) else str(x))
        counts = labels.value_counts().sort_index()
        for level, k in counts.items():
            rows.append(
                {
                    "variable": name,
                    "level": str(level),
                    "statistic": "n (%)",
                    "value": f"{k} ({100 * k / n:.1f}%)",
                }
            )
    missing = int(values.isna().sum())
    if missing:
        rows.append(
            {
                "variable": name,
                "level": "missing",
                "statistic": "n (%)",
                "value": f"{missing} ({100 * missing / n:.1f}%)",
            }
        )
    return rows


def table1(
    tables: Mapping[str, pd.DataFrame],
    event: str,
    variables: Sequence[str],
    categorical: Collection[str] = (),
) -> pd.DataFrame:
    """Table 1: one row per variable (and level), one value column per cohort.

    Rows: patients, events, then every variable in ``variables`` that the cohort's table
    has. A variable's kind (continuous/categorical) is decided on all cohorts pooled, so
    the cohorts' rows line up; ``categorical`` variables are always counted.

    Returns:
        Columns variable, level, statistic, then one column per cohort (text such as
        ``58 (50-66)`` or ``12 (20.0%)``; empty where a cohort lacks the variable).
    """
    pooled = pd.concat(list(tables.values()), ignore_index=True)
    per_cohort = {}
    for name, t in tables.items():
        rows = [
            {"variable": "patients", "level": "", "statistic": "n", "value": str(len(t))},
            {
                "variable": event,
                "level": "1",
                "statistic": "n (%)",
                "value": f"{int(t[event].sum())} ({100 * t[event].mean():.1f}%)",
            },
        ]
        for var in variables:
            if var not in t.columns:
                continue
            kind = "categorical" if var in categorical else variable_kind(pooled[var])
            rows += _describe(t[var], var, kind)
        per_cohort[name] = pd.DataFrame(rows).set_index(["variable", "level", "statistic"])["value"]
    out = pd.concat(per_cohort, axis=1, sort=False).reset_index()
    return out.fillna("")


def followup(tables: Mapping[str, pd.DataFrame], outcome: Outcome) -> pd.DataFrame:
    """Median follow-up (reverse Kaplan-Meier) per cohort with its 95 % CI.

    Returns:
        Columns cohort, n, events, median_followup, lower, upper, note.
    """
    rows = []
    for name, t in tables.items():
        row = {"cohort": name, "n": len(t), "events": int(t[outcome.event].sum()), "note": ""}
        try:
            km = median_followup(t, outcome.time, outcome.event, id_col="patient_id")
        except InputError as err:
            row["note"] = err.problem
        else:
            row.update(median_followup=km.median, lower=km.median_lower, upper=km.median_upper)
        rows.append(row)
    cols = ["cohort", "n", "events", "median_followup", "lower", "upper", "note"]
    return pd.DataFrame(rows).reindex(columns=cols)


def associations(
    table: pd.DataFrame, features: Sequence[str], variables: Sequence[str]
) -> list[dict]:
    """Feature vs variable associations in one cohort (pairwise complete cases).

    * continuous variable: Pearson r (``statistic``) and its p;
    * binary variable: Wilcoxon rank-sum (Mann-Whitney U, two-sided);
    * other (categorical) variables are skipped.

    Returns:
        Rows with feature, variable, n, test, statistic, p.
    """
    rows = []
    for var in variables:
        kind = variable_kind(table[var])
        if kind == "categorical":
            continue
        for f in features:
            d = table[[f, var]].dropna()
            row = {"feature": f, "variable": var, "n": len(d)}
            if kind == "continuous":
                x, y = d[f].to_numpy(float), pd.to_numeric(d[var]).to_numpy(float)
                ok = len(d) > 2 and np.ptp(x) > 0 and np.ptp(y) > 0
                r, p = stats.pearsonr(x, y) if ok else (np.nan, np.nan)
                row.update(test="pearson", statistic=float(r), p=float(p))
            else:
                levels = sorted(d[var].astype(str).unique())
                a = d.loc[d[var].astype(str) == levels[0], f]
                b = d.loc[d[var].astype(str) == levels[-1], f]
                if len(levels) == 2:
                    res = stats.mannwhitneyu(a, b, alternative="two-sided")
                    row.update(test="wilcoxon", statistic=float(res.statistic), p=float(res.pvalue))
                else:
                    row.update(test="wilcoxon", statistic=np.nan, p=np.nan)
            rows.append(row)
    return rows


def independence(table: pd.DataFrame, group: str, variables: Sequence[str]) -> list[dict]:
    """Chi-squared test of independence (no continuity correction) of ``group`` vs each variable.

    Returns:
        Rows with feature (the group), variable, test, statistic, p, n.
    """
    rows = []
    for var in variables:
        d = table[[group, var]].dropna()
        tab = pd.crosstab(d[group], d[var])
        if tab.shape[0] > 1 and tab.shape[1] > 1:
            chi2, p, _, _ = stats.chi2_contingency(tab.to_numpy(), correction=False)
        else:
            chi2 = p = np.nan
        rows.append(
            {
                "feature": group,
                "variable": var,
                "test": "chi-squared",
                "statistic": float(chi2),
                "p": float(p),
                "n": len(d),
            }
        )
    return rows
