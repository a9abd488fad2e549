"""The CRLM survival analysis (METHODS section 5): :func:`run_crlm` and its result.

The model is fitted on the discovery cohort (:mod:`.crlm_model`); every cohort, discovery
included, is then scored with it and analysed with the same cohort steps: risk groups,
CRS and combined grade (:mod:`.groups`), the multivariable model (:mod:`.cox_tables`),
time-dependent ROC (:mod:`.roc_tables`), calibration (:mod:`.calibration_table`), adjuvant
subgroups and the descriptive tables (:mod:`.descriptives`).

Every function returns DataFrames or small dataclasses; nothing is printed or written.
Patients left out of a step are returned as exclusion rows
(:data:`histoprog.analysis.features.EXCLUSION_COLUMNS`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from histoprog.analysis.calibration_table import calibration_table
from histoprog.analysis.cox_tables import encode_factors, multivariate_cox, univariate_table
from histoprog.analysis.crlm_model import CRLMModel, ScoredCohort, fit_discovery, score_cohort
from histoprog.analysis.crlm_settings import CRLMSettings
from histoprog.analysis.crs import GRADE_LABELS
from histoprog.analysis.cutpoints import HIGH_SUFFIX
from histoprog.analysis.descriptives import associations, followup, independence, table1
from histoprog.analysis.features import Cohort, exclusions, incomplete_rows
from histoprog.analysis.groups import GroupSurvival, group_survival
from histoprog.analysis.outcome import apply_horizon
from histoprog.analysis.roc_tables import (
    auc_table,
    compare_table,
    curve_times,
    late_table,
    marker_roc,
    split_times,
)
from histoprog.errors import InputError
from histoprog.survival import CalibrationResult, TimeROCResult
from histoprog.survival._data import format_ids

__all__ = [
    "CRLMResult",
    "CRLMSettings",
    "adjuvant_subgroups",
    "multivariate",
    "roc_analysis",
    "run_crlm",
    "validation_univariate",
]

CLINICAL_FACTORS_KEY = "crlm.clinical_factors"
"""Config key of the multivariable model's clinical factors (named in messages)."""

TIME_ROC_COLUMNS: tuple[str, ...] = (
    "cohort",
    "marker",
    "time",
    "auc",
    "se",
    "lower",
    "upper",
    "cases",
    "controls",
    "censored",
    "cum_incidence",
    "surv_prob",
    "note",
    "n",
)
"""Columns of time_roc.tsv."""


def multivariate(sc: ScoredCohort, s: CRLMSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """METHODS 5.8: Cox model of the SOF risk group (``sof_high``) and the clinical factors.

    Patients missing a factor are left out (exclusion rows, step ``multivariate``); a
    factor constant in this cohort is left out of its model (a row with a note).

    Returns:
        (table: term, coef, se, z, hr, hr_lower, hr_upper, p_wald, p_lrt, n, events, note;
        exclusions).
    """
    where = f"cohort '{sc.name}'"
    if "crs_high" in s.clinical_factors and not sc.has_crs:
        raise InputError(
            f"clinical factor 'crs_high' ({where})",
            f"the clinical table has neither the CRS column '{s.crs.score}' nor all of "
            f"{list(s.crs.components())}",
            "add the CRS columns (config key crlm.crs names them) or remove crs_high from "
            "crlm.clinical_factors",
        )
    design, names = encode_factors(sc.table, s.clinical_factors, where, CLINICAL_FACTORS_KEY)
    d = pd.concat([sc.table[["patient_id", s.time, s.event, "sof_high"]], design], axis=1)
    terms = ["sof_high", *names]
    complete, excl = incomplete_rows(sc.name, d, terms, "multivariate")
    model = multivariate_cox(d[complete], s.outcome, terms)
    if model.fit is None:
        raise InputError(
            f"multivariate Cox model of {where}",
            f"{model.problem} with terms {list(model.used)}",
            "remove the clinical factor that separates the events from crlm.clinical_factors",
        )
    return model.table("constant in this cohort; left out of the model"), excl


def _markers(sc: ScoredCohort) -> dict[str, str]:
    """Marker name -> column of the ROC analysis (CRS ones only when available)."""
    out = {"sof_score": "score"}
    if sc.has_crs:
        out.update(crs="crs", combined_grade="grade")
    return out


def roc_analysis(
    sc: ScoredCohort, s: CRLMSettings
) -> tuple[pd.DataFrame, pd.DataFrame, list[TimeROCResult]]:
    """METHODS 5.11: time-dependent AUC of the SOF score, CRS and combined grade.

    Computed on the patients with every marker (so the comparisons are paired), at
    ``roc_times`` (tables; a time at or beyond the last follow-up is a row with a note)
    and on a grid every ``roc_curve_step`` months (curves).

    Returns:
        (time_roc rows (:data:`TIME_ROC_COLUMNS`); comparison rows: cohort, marker_a,
        marker_b, time, delta_auc, se_delta, z, p; curve results on the grid).
    """
    markers = _markers(sc)
    d = sc.table.dropna(subset=list(markers.values()))
    t = d[s.time].to_numpy(float)
    times, late = split_times(s.roc_times, t)
    res = marker_roc(d, s.outcome, markers, times) if times else {}
    parts = [auc_table(res), late_table(list(markers), late, len(d))]
    auc = pd.concat([p for p in parts if not p.empty], ignore_index=True)
    auc.insert(0, "cohort", sc.name)
    auc = auc[[c for c in TIME_ROC_COLUMNS if c in auc.columns]]
    comp = compare_table(res)
    comp.insert(0, "cohort", sc.name)
    grid = curve_times(t, s.roc_curve_step, s.horizon_months)
    curves = list(marker_roc(d, s.outcome, markers, grid).values()) if len(grid) else []
    return auc, comp, curves


def adjuvant_subgroups(sc: ScoredCohort, s: CRLMSettings) -> list[GroupSurvival]:
    """METHODS 5.13: adjuvant yes vs no within preop-chemo strata, in all / SOF high / low.

    Returns an empty list when the cohort lacks the chemotherapy columns.
    """
    t = sc.table
    if s.preop_chemo not in t.columns or s.adjuvant_chemo not in t.columns:
        return []
    t = t.assign(adjuvant=t[s.adjuvant_chemo].map({1: "yes", 0: "no"}))
    out = []
    for pre, pre_label in ((0, "no preoperative chemotherapy"), (1, "preoperative chemotherapy")):
        stratum = t[t[s.preop_chemo] == pre]
        for risk in ("all", "High", "Low"):
            d = stratum if risk == "all" else stratum[stratum["risk_group"] == risk]
            subset = f"{pre_label}; SOF {risk}" if risk != "all" else pre_label
            out.append(
                group_survival(
                    d,
                    s.outcome,
                    "adjuvant",
                    ["no", "yes"],
                    s.survival_at,
                    cohort=sc.name,
                    analysis="adjuvant",
                    subset=subset,
                )
            )
    return out


def validation_univariate(sc: ScoredCohort, model: CRLMModel, s: CRLMSettings) -> pd.DataFrame:
    """Univariate Cox of each selected ``<feature>_high`` (discovery cutpoints) in a cohort.

    Returns:
        Rows: cohort, kind (``sof``), term, feature, then the univariate Cox columns.
    """
    table = univariate_table(sc.table, s.outcome, list(model.selected), "sof")
    table.insert(2, "feature", table["term"].str.removesuffix(HIGH_SUFFIX))
    table.insert(0, "cohort", sc.name)
    return table


def _cohort_groups(sc: ScoredCohort, s: CRLMSettings) -> list[GroupSurvival]:
    """SOF risk groups, and with the CRS the CRS groups and the combined grade."""
    t = sc.table

    def groups(table: pd.DataFrame, column: str, labels: Sequence[str], name: str) -> Any:
        return group_survival(
            table, s.outcome, column, labels, s.survival_at, cohort=sc.name, analysis=name
        )

    out = [groups(t, "risk_group", ["Low", "High"], "sof_risk_group")]
    if sc.has_crs:
        t = t.assign(crs_group=t["crs_high"].map({0.0: "Low", 1.0: "High"}))
        out.append(groups(t, "crs_group", ["Low", "High"], "crs"))
        out.append(groups(t, "grade_label", list(GRADE_LABELS), "combined_grade"))
    return out


# --------------------------------------------------------------------------- whole analysis


@dataclass
class CRLMResult:
    """Everything :func:`run_crlm` produces: the model, tables and figure inputs.

    ``validation_univariate`` holds, per validation cohort, the univariate Cox of the
    selected features at the discovery cutpoints.
    """

    model: CRLMModel
    settings: CRLMSettings
    discovery: str | None
    scored: dict[str, ScoredCohort]
    tables: dict[str, pd.DataFrame]
    multivariate: dict[str, pd.DataFrame]
    validation_univariate: dict[str, pd.DataFrame]
    survival: list[GroupSurvival]
    roc_curves: dict[str, list[TimeROCResult]]
    calibration: dict[str, dict[float, CalibrationResult]]
    notes: list[str] = field(default_factory=list)

    def model_json(self) -> dict[str, Any]:
        """model.json content: the fitted model plus patient counts per cohort."""
        out = self.model.as_json(self.settings, self.discovery)
        ex = self.tables["exclusions"]
        out["cohorts"] = {
            name: {
                "role": sc.role,
                "n_scored": len(sc.table),
                "n_excluded": int((ex["cohort"] == name).sum()),
                "events": int(sc.table[self.settings.event].sum()),
                "crs_available": sc.has_crs,
            }
            for name, sc in self.scored.items()
        }
        out["notes"] = self.notes
        return out


def run_crlm(
    cohorts: Sequence[Cohort],
    s: CRLMSettings,
    thresholds: Mapping[str, float] | None = None,
    model: CRLMModel | None = None,
) -> CRLMResult:
    """The whole CRLM analysis: fit on the one discovery cohort, apply to all cohorts.

    With ``model`` (from a bundle, :meth:`CRLMModel.from_json`) nothing is fitted: every
    cohort is scored and analysed with it, and the discovery-only tables are left out.
    A cohort without outcome columns (``has_outcome`` false) is scored only: it has
    ``risk_scores`` rows and a note, and no survival analyses or tables.

    Raises:
        InputError: not exactly one discovery cohort (none with ``model``), or any step's
            input error.
    """
    disc = [c for c in cohorts if c.role == "discovery"]
    if len(disc) != (0 if model is not None else 1):
        raise InputError(
            "cohort sheet",
            f"the CRLM analysis needs {'no' if model is not None else 'exactly one'} "
            f"discovery cohort, got {len(disc)} ({format_ids([c.name for c in disc])})",
            "with crlm.model set, give every crlm cohort role validation"
            if model is not None
            else "set role: discovery on one crlm cohort and validation on the others",
        )
    cohorts = [
        apply_horizon(c, s.outcome, s.horizon_months, s.horizon_policy) if c.has_outcome else c
        for c in cohorts
    ]
    excl = [c.exclusions for c in cohorts]
    discovery = next((c for c in cohorts if c.role == "discovery"), None)
    if discovery is not None:
        model, excl_fit = fit_discovery(discovery, s, thresholds)
        excl.append(excl_fit)
    assert model is not None
    scored: dict[str, ScoredCohort] = {}
    survival: list[GroupSurvival] = []
    mv: dict[str, pd.DataFrame] = {}
    uni: dict[str, pd.DataFrame] = {}
    roc, roc_cmp, curves, cal_rows, cal = [], [], {}, [], {}
    notes: list[str] = []
    for c in cohorts:
        sc, ex = score_cohort(c, model, s)
        scored[c.name] = sc
        excl.append(ex)
        if not c.has_outcome:
            notes.append(f"cohort {c.name}: no outcome columns; scores and risk groups only")
            continue
        t = sc.table
        survival.extend(_cohort_groups(sc, s))
        if sc.has_crs:
            if t["crs"].isna().any():
                excl.append(
                    exclusions(
                        c.name,
                        t.loc[t["crs"].isna(), "patient_id"],
                        "crs",
                        "missing CRS value(s): left out of CRS, combined-grade "
                        "and ROC analyses only",
                    )
                )
        else:
            notes.append(f"cohort {c.name}: no CRS columns; CRS analyses skipped")
        survival.extend(adjuvant_subgroups(sc, s))
        mv[c.name], ex = multivariate(sc, s)
        excl.append(ex)
        if c.role != "discovery":
            uni[c.name] = validation_univariate(sc, model, s)
        a, b, cur = roc_analysis(sc, s)
        roc.append(a)
        roc_cmp.append(b)
        curves[c.name] = cur
        table, results = calibration_table(
            t,
            s.outcome,
            ["score"],
            s.calibration_times,
            m=s.calibration_group_size,
            B=s.calibration_bootstrap_reps,
            seed=s.seed,
            cohort=c.name,
        )
        cal_rows.append(table)
        cal[c.name] = results
    fitted = (
        {
            "cutpoints": model.tables["cutpoints"],
            "univariate_cox": _with_clinical_univariate(model, scored[discovery.name], s),
            "correlation": model.tables["correlation"],
            "cutoff_scan": model.tables["cutoff_scan"],
            "stepwise": model.step_path,
            "model_coefficients": model.tables["model_coefficients"],
        }
        if discovery is not None
        else {}
    )
    analysed = {name: sc for name, sc in scored.items() if name in curves}
    survival_tables = (
        {
            "logrank": pd.concat([g.tests for g in survival], ignore_index=True),
            "km_groups": pd.concat([g.groups for g in survival], ignore_index=True),
            "time_roc": pd.concat(roc, ignore_index=True),
            "time_roc_compare": pd.concat(roc_cmp, ignore_index=True),
            "calibration": pd.concat(cal_rows, ignore_index=True),
            **_descriptives(analysed, model, s),
        }
        if analysed
        else {}
    )
    tables = {
        **fitted,
        "risk_scores": _risk_scores(scored, model, s),
        "exclusions": pd.concat([e for e in excl if not e.empty] or [excl[0]], ignore_index=True),
        **survival_tables,
    }
    return CRLMResult(
        model,
        s,
        discovery.name if discovery else None,
        scored,
        tables,
        mv,
        uni,
        survival,
        curves,
        cal,
        notes,
    )


def _descriptives(
    scored: Mapping[str, ScoredCohort], model: CRLMModel, s: CRLMSettings
) -> dict[str, pd.DataFrame]:
    """table1, followup and associations of the scored cohorts (METHODS 5.14)."""
    derived = ["crs", "crs_high"]
    tables = {
        name: sc.table if sc.has_crs else sc.table.drop(columns=derived)
        for name, sc in scored.items()
    }
    variables: list[str] = []
    for sc in scored.values():
        variables += [c for c in sc.clinical if c not in variables]
    rows = []
    for name, sc in scored.items():
        found = associations(sc.table, model.features(), sc.clinical)
        if sc.has_crs:
            found += independence(sc.table, "risk_group", ["crs_high", "crs"])
        rows += [{"cohort": name, **r} for r in found]
    cols = ["cohort", "feature", "variable", "test", "statistic", "p", "n"]
    return {
        "table1": table1(tables, s.event, [*variables, *derived, "risk_group"], derived),
        "followup": followup(tables, s.outcome),
        "associations": pd.DataFrame(rows).reindex(columns=cols),
    }


def _with_clinical_univariate(model: CRLMModel, sc: ScoredCohort, s: CRLMSettings) -> pd.DataFrame:
    """The SOF univariate table plus one row per clinical factor (discovery)."""
    where = f"cohort '{sc.name}'"
    design, names = encode_factors(sc.table, s.clinical_factors, where, CLINICAL_FACTORS_KEY)
    d = pd.concat([sc.table[["patient_id", s.time, s.event]], design], axis=1)
    names = [n for n in names if d[n].nunique() > 1]
    clin = univariate_table(d, s.outcome, names, "clinical")
    clin.insert(2, "feature", clin["term"])
    clin["candidate"] = False
    return pd.concat([model.tables["univariate"], clin], ignore_index=True)


def _risk_scores(
    scored: Mapping[str, ScoredCohort], model: CRLMModel, s: CRLMSettings
) -> pd.DataFrame:
    """risk_scores.tsv: one row per scored patient of every cohort."""
    cols = [
        "patient_id",
        s.time,
        s.event,
        *model.features(),
        *model.selected,
        "score",
        "risk_group",
        "crs",
        "crs_high",
        "grade",
        "grade_label",
    ]
    return pd.concat(
        [
            sc.table.reindex(columns=cols).assign(cohort=name)[["cohort", *cols]]
            for name, sc in scored.items()
        ],
        ignore_index=True,
    )
