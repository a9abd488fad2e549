"""Recurrence-free survival analysis of the MIL score (METHODS 6.7).

Per cohort: Kaplan-Meier by MIL group with log-rank p and HR; univariate Cox of the MIL
score, the MIL group and each clinical factor; a multivariate Cox model of the MIL group
and the clinical factors; time-dependent AUC (``survival.time_roc``) of the MIL score and
of each factor at every ``auc_years`` year; KM of the MIL groups within the strata of each
clinical factor. Each is a generic cohort step of :mod:`histoprog.analysis` (the same
table shapes and column names as the CRLM analysis: ``hr``, ``hr_lower``, ``hr_upper``,
``p_wald``, ``p_lrt``, ``auc``, ``se``, ``p``).

Clinical factors are given as ``{column: rule}``: ``null`` uses the column as it is (numbers,
or a two-level text column coded 0/1), a number ``c`` gives ``column>c`` (1 when the value
is above c), a list of values gives ``column in [...]`` (1 when the value is one of them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from histoprog.analysis.cox_tables import encode_factors, multivariate_cox, univariate_table
from histoprog.analysis.features import exclusions
from histoprog.analysis.groups import GroupSurvival, group_survival
from histoprog.analysis.outcome import Outcome
from histoprog.analysis.roc_tables import auc_table, marker_roc, split_times
from histoprog.defaults import default
from histoprog.errors import InputError
from histoprog.survival import TimeROCResult

GROUPS = ("low", "high")

FACTORS_KEY = "hcc.analysis.clinical_factors"
"""Config key of the clinical factors (named in messages)."""


@dataclass(frozen=True)
class HCCSettings:
    """Settings of the HCC analysis (config ``hcc.analysis``; outcome from ``clinical.hcc``)."""

    time: str = default("clinical.hcc.time")
    event: str = default("clinical.hcc.event")
    threshold: float = default("hcc.mil.threshold")
    clinical_factors: Mapping[str, Any] = field(default_factory=lambda: default(FACTORS_KEY))
    auc_years: tuple[float, ...] = default("hcc.analysis.auc_years")
    survival_at: float = default("hcc.analysis.survival_at")
    risk_step: float = default("hcc.analysis.risk_step")

    @property
    def outcome(self) -> Outcome:
        """The time and event columns."""
        return Outcome(self.time, self.event)


def derive_factors(
    clinical: pd.DataFrame, factors: Mapping[str, Any], where: str
) -> tuple[pd.DataFrame, list[str]]:
    """Design columns of the clinical factors (rules in the module docstring).

    Raises:
        InputError: a missing column, a non-numeric column with a threshold, or a text
            column with more than two values and no level list.
    """
    out: dict[str, pd.Series] = {}
    for column, rule in factors.items():
        if column not in clinical.columns:
            raise InputError(
                f"clinical factor '{column}' ({where})",
                f"is not a column of the clinical table (columns: {list(clinical.columns)})",
                f"correct or remove it in config key {FACTORS_KEY}",
            )
        values = clinical[column]
        if rule is None:
            try:
                table, _ = encode_factors(clinical, [column], where, FACTORS_KEY)
            except InputError as err:
                raise InputError(
                    err.what,
                    err.problem,
                    f"give a threshold or a list of levels for it in {FACTORS_KEY}",
                ) from None
            out.update({c: table[c] for c in table.columns})
        elif isinstance(rule, list | tuple):
            name = f"{column} in [{','.join(map(str, rule))}]"
            hit = values.astype(str).isin([str(v) for v in rule]).astype(float)
            out[name] = hit.where(values.notna())
        else:
            num = pd.to_numeric(values, errors="coerce")
            if (num.isna() & values.notna()).any():
                raise InputError(
                    f"clinical factor '{column}' ({where})",
                    f"has non-numeric values, so the threshold {rule} cannot be applied",
                    "give a list of levels instead of a threshold",
                )
            out[f"{column}>{rule:g}"] = (num > float(rule)).astype(float).where(num.notna())
    table = pd.DataFrame(out, index=clinical.index)
    return table, list(table.columns)


def patient_scores(mil: pd.DataFrame, t: float) -> pd.DataFrame:
    """One row per patient: mean MIL score of its ``ok`` slides, ``mil_high`` (score >= t)."""
    ok = mil[mil["status"] == "ok"]
    scores = ok.groupby("patient_id", sort=False)["score"].mean().rename("mil_score").reset_index()
    scores["mil_high"] = (scores["mil_score"] >= t).astype(float)
    scores["mil_group"] = np.where(scores["mil_high"] == 1, "high", "low")
    return scores


@dataclass
class HCCCohortResult:
    """Everything the analysis of one cohort gives (tables have a ``cohort`` column)."""

    name: str
    data: pd.DataFrame
    factors: list[str]
    km: GroupSurvival
    univariate: pd.DataFrame
    multivariate: pd.DataFrame
    time_roc: pd.DataFrame
    roc_curves: list[TimeROCResult]
    strata: list[GroupSurvival]
    exclusions: pd.DataFrame


def _roc(data: pd.DataFrame, markers: Sequence[str], s: HCCSettings) -> tuple[pd.DataFrame, list]:
    """Time-dependent AUC of every marker at the ``auc_years`` within follow-up."""
    times, _ = split_times([12.0 * y for y in s.auc_years], data[s.time].to_numpy(float))
    if not times or data[s.event].sum() == 0:
        return pd.DataFrame(columns=["marker", "time", "auc", "se", "note"]), []
    res = marker_roc(data, s.outcome, {m: m for m in markers}, times)
    table = auc_table(res)
    table.insert(table.columns.get_loc("n"), "years", table["time"] / 12.0)
    return table, list(res.values())


def scored_patients(
    name: str, mil: pd.DataFrame, clinical: pd.DataFrame, t: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The clinical rows joined to the patients' MIL scores and groups at ``t``.

    Returns:
        (the joined table, exclusion rows of clinical patients without a score).

    Raises:
        InputError: no patient has both a MIL score and a clinical row.
    """
    scores = patient_scores(mil, t)
    clinical = clinical.assign(patient_id=clinical["patient_id"].astype(str))
    data = clinical.merge(scores, on="patient_id", how="inner")
    missing = sorted(set(clinical["patient_id"]) - set(scores["patient_id"]))
    excl = exclusions(name, missing, "input", "no MIL score (no slide, or every slide failed)")
    if data.empty:
        raise InputError(
            f"MIL table of cohort '{name}'",
            "shares no patient_id with the clinical table (or every slide failed)",
            "check the slide table's patient_id column against the clinical table",
        )
    return data, excl


def analyse_cohort(
    name: str, mil: pd.DataFrame, clinical: pd.DataFrame, s: HCCSettings
) -> HCCCohortResult:
    """The whole per-cohort analysis (see module docstring).

    Raises:
        InputError: no patient with both a MIL score and a clinical row, or bad factors.
    """
    where = f"cohort '{name}'"
    data, excl = scored_patients(name, mil, clinical, s.threshold)
    design, factors = derive_factors(data, s.clinical_factors, where)
    data = pd.concat([data.drop(columns=[c for c in factors if c in data]), design], axis=1)
    km = group_survival(
        data, s.outcome, "mil_group", list(GROUPS), s.survival_at, cohort=name, analysis="mil"
    )
    uni = pd.concat(
        [univariate_table(data, s.outcome, ["mil_score", "mil_high"], "mil"),
         univariate_table(data, s.outcome, factors, "clinical")],
        ignore_index=True,
    )  # fmt: skip
    uni.insert(0, "cohort", name)
    multi = multivariate_cox(data, s.outcome, ["mil_high", *factors]).table(
        "constant in this cohort; left out"
    )
    multi.insert(0, "cohort", name)
    roc, curves = _roc(data, ["mil_score", *factors], s)
    roc.insert(0, "cohort", name)
    strata = []
    for f in factors:
        for level in sorted(data[f].dropna().unique()):
            sub = data[data[f] == level]
            label = f"{f} = {level:g}"
            strata.append(
                group_survival(
                    sub,
                    s.outcome,
                    "mil_group",
                    list(GROUPS),
                    s.survival_at,
                    cohort=name,
                    analysis="mil",
                    subset=label,
                )
            )
    return HCCCohortResult(name, data, factors, km, uni, multi, roc, curves, strata, excl)


def gallery_tiles(tiles: pd.DataFrame, n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``n`` highest- and ``n`` lowest-logit tiles (rows of a table with ``logit``).

    Ties are broken by slide and tile order, so the choice is deterministic.
    """
    ordered = tiles.sort_values(["logit", "slide_id", "index"], kind="stable")
    top = ordered.iloc[::-1].head(n)
    bottom = ordered.head(min(n, max(len(ordered) - len(top), 0)))
    return top, bottom
