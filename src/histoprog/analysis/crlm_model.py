"""The CRLM model (METHODS 5.2-5.10): feature selection, risk score and its cutoff.

:func:`fit_discovery` fits it on the discovery cohort (cutpoints, univariate Cox,
collinearity filter, stepwise AIC, score and cutoff); :func:`score_cohort` applies it,
with the Fong CRS and the combined grade, to any cohort.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from histoprog.analysis.cox_tables import univariate_table
from histoprog.analysis.crlm_settings import CRLMSettings
from histoprog.analysis.crs import CRS_HIGH_POINTS, GRADE_LABELS, crs_points
from histoprog.analysis.cutoff import optimal_cutoff
from histoprog.analysis.cutpoints import HIGH_SUFFIX, binarise, cutpoint_table
from histoprog.analysis.features import Cohort, incomplete_rows
from histoprog.errors import InputError
from histoprog.survival import CoxResult, step_aic

__all__ = [
    "CRLMModel",
    "ScoredCohort",
    "coefficient_table",
    "collinearity",
    "fit_discovery",
    "score_cohort",
]


def collinearity(
    data: pd.DataFrame,
    features: Sequence[str],
    candidates: Sequence[str],
    p_lrt: Mapping[str, float],
    r_max: float,
) -> tuple[pd.DataFrame, list[str]]:
    """METHODS 5.4: Pearson r of the continuous features and the collinearity filter.

    Among the candidates, pairs with |r| > ``r_max`` are resolved from the largest |r|
    down: keep the ``overall_`` feature of the pair; when both or neither are
    ``overall_``, keep the one with the smaller univariate LRT p (ties: the first in
    feature order). A pair with an already dropped member needs nothing.

    Returns:
        (long table of every feature pair: feature_a, feature_b, r, p, n, collinear,
        dropped; the candidates kept, in feature order).
    """
    rows = []
    for a, b in combinations(features, 2):
        x, y = data[a].to_numpy(float), data[b].to_numpy(float)
        ok = np.isfinite(x) & np.isfinite(y)
        n = int(ok.sum())
        if n > 2 and np.ptp(x[ok]) > 0 and np.ptp(y[ok]) > 0:
            r, p = stats.pearsonr(x[ok], y[ok])
        else:
            r = p = math.nan
        both = a in candidates and b in candidates
        rows.append(
            {
                "feature_a": a,
                "feature_b": b,
                "r": float(r),
                "p": float(p),
                "n": n,
                "collinear": bool(both and abs(r) > r_max),
                "dropped": "",
            }
        )
    table = pd.DataFrame(
        rows, columns=["feature_a", "feature_b", "r", "p", "n", "collinear", "dropped"]
    )
    dropped: set[str] = set()
    order = table[table["collinear"]].assign(abs_r=lambda t: t["r"].abs())
    order = order.sort_values("abs_r", ascending=False, kind="stable")
    pos = {f: i for i, f in enumerate(features)}
    for idx, a, b in order[["feature_a", "feature_b"]].itertuples():
        if a in dropped or b in dropped:
            continue
        oa, ob = a.startswith("overall_"), b.startswith("overall_")
        if oa != ob:
            drop = b if oa else a
        else:
            pa, pb = p_lrt[a], p_lrt[b]
            drop = b if (pa, pos[a]) < (pb, pos[b]) else a
        dropped.add(drop)
        table.loc[idx, "dropped"] = drop
    return table, [f for f in candidates if f not in dropped]


@dataclass(frozen=True)
class CRLMModel:
    """Everything fitted on the discovery cohort (written to model.json)."""

    cutpoints: dict[str, float]
    candidates: tuple[str, ...]
    collinear_dropped: tuple[str, ...]
    selected: tuple[str, ...]
    coefficients: dict[str, float]
    cutoff: float
    cutoff_p: float
    thresholds: dict[str, float] | None
    tables: dict[str, pd.DataFrame] = field(repr=False)
    step_path: pd.DataFrame = field(repr=False)

    def features(self) -> list[str]:
        """The continuous features of the score (``selected`` without ``_high``)."""
        return [t.removesuffix(HIGH_SUFFIX) for t in self.selected]

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> CRLMModel:
        """The fitted numbers of a model.json (as :meth:`as_json` wrote them)."""
        return cls(
            cutpoints={k: float(v) for k, v in record["sof_cutpoints"].items()},
            candidates=tuple(record["candidates"]),
            collinear_dropped=tuple(record["collinear_dropped"]),
            selected=tuple(record["selected_features"]),
            coefficients={k: float(v) for k, v in record["coefficients"].items()},
            cutoff=float(record["score_cutoff"]),
            cutoff_p=float(record["score_cutoff_p"]),
            thresholds=record.get("gmm_thresholds"),
            tables={},
            step_path=pd.DataFrame(),
        )

    def as_json(self, s: CRLMSettings, discovery: str) -> dict[str, Any]:
        """The content of model.json."""
        return {
            "discovery_cohort": discovery,
            "sof_cutpoints": self.cutpoints,
            "dichotomy": "<feature>_high = 1 if value > cutpoint",
            "candidates": list(self.candidates),
            "collinear_dropped": list(self.collinear_dropped),
            "selected_features": list(self.selected),
            "coefficients": self.coefficients,
            "score": "sum of coefficient x <feature>_high (uncentred linear predictor)",
            "score_cutoff": self.cutoff,
            "score_cutoff_p": self.cutoff_p,
            "risk_group": "high if score >= score_cutoff",
            "gmm_thresholds": self.thresholds,
            "settings": {
                k: (list(v) if isinstance(v, tuple) else v)
                for k, v in s.__dict__.items()
                if k != "crs"
            }
            | {"crs": s.crs.__dict__},
        }


def coefficient_table(fit: CoxResult) -> pd.DataFrame:
    """The final stepwise model: per term coef, se, z, hr (95 % CI), p_wald; model fit.

    Every row repeats the model-level p_lrt, n, events and Harrell's concordance.
    """
    c = fit.concordance.c if fit.concordance is not None else math.nan
    return fit.summary.assign(n=fit.n, events=fit.n_events, concordance=c)


def fit_discovery(
    cohort: Cohort, s: CRLMSettings, thresholds: Mapping[str, float] | None = None
) -> tuple[CRLMModel, pd.DataFrame]:
    """METHODS 5.2-5.7 on the discovery cohort (after the horizon is applied).

    Returns:
        (the model, exclusion rows of patients left out of the stepwise fit because a
        candidate feature is missing).

    Raises:
        InputError: fewer than ``min_events`` events; no usable feature; no candidate
            with LRT p < ``candidate_p``; stepwise selection keeping no feature.
    """
    data = cohort.data
    outcome = s.outcome
    n_events = int(data[s.event].sum())
    if n_events < s.min_events:
        raise InputError(
            f"discovery cohort '{cohort.name}'",
            f"only {n_events} events among {len(data)} patients (need >= {s.min_events} to "
            "fit a model)",
            "use a larger cohort, or lower config key crlm.min_events at your own risk",
        )
    cuts = cutpoint_table(data, outcome, cohort.features, s.minprop)
    usable = cuts.loc[cuts["status"] == "ok", "feature"].tolist()
    if not usable:
        raise InputError(
            f"discovery cohort '{cohort.name}'",
            "no feature has a usable cutpoint ("
            + "; ".join(f"{f}: {r}" for f, r in zip(cuts["feature"], cuts["reason"], strict=True))
            + ")",
            "check the feature table",
        )
    cutpoints = dict(
        zip(usable, cuts.loc[cuts["status"] == "ok", "cutpoint"].astype(float), strict=True)
    )
    binary = binarise(data, cutpoints)
    bdata = pd.concat([data[["patient_id", s.time, s.event]], binary], axis=1)
    uni = univariate_table(bdata, outcome, list(binary.columns), "sof")
    uni.insert(2, "feature", uni["term"].str.removesuffix(HIGH_SUFFIX))
    uni["candidate"] = uni["p_lrt"] < s.candidate_p
    candidates = uni.loc[uni["candidate"], "feature"].tolist()
    if not candidates:
        raise InputError(
            f"discovery cohort '{cohort.name}'",
            f"no feature has a univariate likelihood-ratio p < {s.candidate_p} "
            f"(smallest: {uni['p_lrt'].min():.3g} for {uni.loc[uni['p_lrt'].idxmin(), 'feature']})",
            "there is no prognostic SOF to build a score from; check the inputs or raise "
            "config key crlm.candidate_p",
        )
    p_lrt = dict(zip(uni["feature"], uni["p_lrt"], strict=True))
    corr, kept = collinearity(data, usable, candidates, p_lrt, s.collinearity_r)
    terms = [f + HIGH_SUFFIX for f in kept]
    complete, excl = incomplete_rows(
        cohort.name, bdata, terms, "stepwise", label=lambda t: t.removesuffix(HIGH_SUFFIX)
    )
    step = step_aic(bdata[complete], s.time, s.event, terms, id_col="patient_id")
    if not step.selected or step.fit is None:
        raise InputError(
            f"discovery cohort '{cohort.name}'",
            f"stepwise AIC selection from {kept} kept no feature",
            "there is no multivariable SOF score; check the inputs",
        )
    if not np.isfinite(step.fit.coef).all():
        raise InputError(
            f"discovery cohort '{cohort.name}'",
            f"the Cox model of the selected features {list(step.selected)} did not converge "
            f"(coefficients {np.round(step.fit.coef, 3).tolist()}): a feature probably "
            "separates events completely",
            "check the features' cutpoints.tsv and univariate_cox.tsv; with few patients, "
            "drop the feature through crlm.features in config.yaml",
        )
    coef = dict(zip(step.selected, step.fit.coef.astype(float), strict=True))
    scored = bdata[complete].copy()
    scored["score"] = scored[list(step.selected)].to_numpy(float) @ step.fit.coef
    cutoff = optimal_cutoff(
        scored,
        "score",
        outcome,
        cutoff_range=s.cutoff_range,
        step=s.cutoff_step,
        test=s.cutoff_test,
    )
    model = CRLMModel(
        cutpoints=cutpoints,
        candidates=tuple(candidates),
        collinear_dropped=tuple(f for f in candidates if f not in kept),
        selected=step.selected,
        coefficients=coef,
        cutoff=cutoff.cutoff,
        cutoff_p=cutoff.p,
        thresholds=None if thresholds is None else dict(thresholds),
        tables={
            "cutpoints": cuts,
            "univariate": uni,
            "correlation": corr,
            "cutoff_scan": cutoff.scan,
            "model_coefficients": coefficient_table(step.fit),
        },
        step_path=step.path,
    )
    return model, excl


@dataclass(frozen=True)
class ScoredCohort:
    """A cohort scored with the discovery model.

    ``table``: one row per scored patient with the clinical columns, the model's features
    and ``_high`` columns, ``score``, ``sof_high`` (0/1), ``risk_group`` (Low/High),
    ``crs`` (points or NaN), ``crs_high``, ``grade`` (0/1/2 or NaN) and ``grade_label``.
    """

    name: str
    role: str
    table: pd.DataFrame
    has_crs: bool
    clinical: tuple[str, ...] = ()


def score_cohort(
    cohort: Cohort, model: CRLMModel, s: CRLMSettings
) -> tuple[ScoredCohort, pd.DataFrame]:
    """Apply the model (cutpoints, coefficients, cutoff) and the CRS to a cohort.

    Returns:
        (the scored cohort, exclusion rows of patients missing a model feature).

    Raises:
        InputError: a validation cohort lacks a model feature column.
    """
    feats = model.features()
    missing = [f for f in feats if f not in cohort.data.columns]
    if missing:
        raise InputError(
            f"cohort '{cohort.name}'",
            f"its feature table lacks the model feature(s) {missing} selected on the "
            "discovery cohort",
            "compute these features for this cohort (same definitions as discovery)",
        )
    data = cohort.data.copy()
    binary = binarise(data, {f: model.cutpoints[f] for f in feats})
    data = pd.concat([data, binary], axis=1)
    complete, excl = incomplete_rows(
        cohort.name, data, feats, "score", prefix="missing model feature(s) "
    )
    data = data[complete].reset_index(drop=True)
    beta = np.array([model.coefficients[t] for t in model.selected])
    data["score"] = data[list(model.selected)].to_numpy(float) @ beta
    data["sof_high"] = (data["score"] >= model.cutoff).astype(int)
    data["risk_group"] = np.where(data["sof_high"] == 1, "High", "Low")
    pts = crs_points(data, s.crs, f"clinical table of cohort '{cohort.name}'")
    has_crs = pts is not None
    data["crs"] = pts if has_crs else np.nan
    data["crs_high"] = np.where(data["crs"].notna(), (data["crs"] >= CRS_HIGH_POINTS), np.nan)
    data["grade"] = data["sof_high"] + data["crs_high"]
    data["grade_label"] = data["grade"].map(dict(enumerate(GRADE_LABELS)))
    clinical = tuple(
        c
        for c in cohort.data.columns
        if c not in cohort.features and c not in ("patient_id", s.time, s.event)
    )
    return ScoredCohort(cohort.name, cohort.role, data, has_crs, clinical), excl
