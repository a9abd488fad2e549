"""The CRLM survival analysis (METHODS section 5), one function per step.

The discovery cohort fits everything (:func:`fit_discovery`: cutpoints, univariate Cox,
collinearity filter, stepwise AIC, risk score and its cutoff); every cohort, discovery
included, is then scored with the same model (:func:`score_cohort`) and analysed the same
way (:func:`group_survival`, :func:`multivariate`, :func:`roc_analysis`,
:func:`calibration_analysis`, :func:`adjuvant_subgroups`). :func:`run_crlm` chains it all.

Every function returns DataFrames or small dataclasses; nothing is printed or written.
Patients left out of a step are returned as exclusion rows
(:data:`histoprog.analysis.features.EXCLUSION_COLUMNS`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from histoprog.analysis.crs import CRS_HIGH_POINTS, GRADE_LABELS, CRSColumns, crs_points
from histoprog.analysis.features import Cohort, exclusions
from histoprog.errors import InputError
from histoprog.survival import (
    CalibrationResult,
    KMResult,
    TimeROCResult,
    calibrate,
    compare_auc,
    coxph,
    kaplan_meier,
    logrank,
    maxstat_cutpoint,
    step_aic,
    time_roc,
)
from histoprog.survival._data import format_ids

__all__ = [
    "CRLMSettings",
    "CRLMModel",
    "CutoffResult",
    "ScoredCohort",
    "GroupSurvival",
    "CRLMResult",
    "apply_horizon",
    "sof_cutpoints",
    "binarise",
    "encode_factors",
    "univariate",
    "collinearity",
    "optimal_cutoff",
    "fit_discovery",
    "score_cohort",
    "group_survival",
    "multivariate",
    "roc_analysis",
    "calibration_analysis",
    "adjuvant_subgroups",
    "run_crlm",
]

HIGH_SUFFIX = "_high"
"""Suffix of a dichotomised feature column: ``<feature>_high`` = value > cutpoint."""


@dataclass(frozen=True)
class CRLMSettings:
    """Settings of the CRLM analysis.

    Config ``crlm.*``; ``time``/``event`` come from ``clinical.crlm``. Each key is
    documented in config/README.md.
    """

    time: str = "os_months"
    event: str = "os_event"
    horizon_months: float = 120.0
    horizon_policy: str = "censor"
    features: tuple[str, ...] | None = None
    minprop: float = 0.1
    candidate_p: float = 0.05
    collinearity_r: float = 0.7
    cutoff_range: tuple[float, float] = (0.1, 0.9)
    cutoff_step: float = 1e-4
    cutoff_test: str = "wald"
    survival_at: float = 60.0
    roc_times: tuple[float, ...] = (60.0, 96.0)
    roc_curve_step: float = 6.0
    calibration_times: tuple[float, ...] = (60.0, 96.0)
    calibration_B: int = 1000  # noqa: N815
    calibration_m: int = 50
    seed: int = 0
    min_events: int = 10
    clinical_factors: tuple[str, ...] = ("crs_high", "age", "sex", "preop_chemo")
    crs: CRSColumns = field(default_factory=CRSColumns)
    preop_chemo: str = "preop_chemo"
    adjuvant_chemo: str = "adjuvant_chemo"

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> CRLMSettings:
        """Build from config values (unknown keys and bad values name the key)."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise InputError(
                "config section crlm", f"unknown key(s) {unknown}", "see config/README.md"
            )
        kw: dict[str, Any] = {}
        for key, value in values.items():
            if key == "crs":
                kw[key] = CRSColumns.from_mapping(value)
            elif key in ("cutoff_range", "roc_times", "calibration_times", "clinical_factors"):
                kw[key] = tuple(value)
            elif key == "features":
                kw[key] = None if value is None else tuple(value)
            else:
                kw[key] = value
        settings = cls(**kw)
        settings.check()
        return settings

    def check(self) -> None:
        """Raise an InputError naming the first bad value."""

        def bad(key: str, problem: str, fix: str) -> None:
            raise InputError(f"config key crlm.{key}", problem, fix)

        if self.horizon_policy not in ("censor", "drop"):
            bad("horizon_policy", f"unknown value {self.horizon_policy!r}", "use censor or drop")
        if self.cutoff_test not in ("wald", "logrank"):
            bad("cutoff_test", f"unknown value {self.cutoff_test!r}", "use wald or logrank")
        if not 0 < self.minprop < 0.5:
            bad("minprop", f"{self.minprop} is not in (0, 0.5)", "use e.g. 0.1")
        lo, hi = (self.cutoff_range + (None, None))[:2] if len(self.cutoff_range) == 2 else (1, 0)
        if lo is None or not 0 <= lo < hi <= 1:
            bad(
                "cutoff_range",
                f"{list(self.cutoff_range)} is not [lo, hi] in [0, 1]",
                "e.g. [0.1, 0.9]",
            )
        if self.cutoff_step <= 0:
            bad("cutoff_step", "must be > 0", "use e.g. 0.0001")
        if not 0 < self.collinearity_r <= 1:
            bad("collinearity_r", f"{self.collinearity_r} is not in (0, 1]", "use e.g. 0.7")
        if not 0 < self.candidate_p <= 1:
            bad("candidate_p", f"{self.candidate_p} is not in (0, 1]", "use e.g. 0.05")
        for key in ("roc_times", "calibration_times"):
            if not getattr(self, key) or min(getattr(self, key)) <= 0:
                bad(key, "must be a non-empty list of positive months", "e.g. [60, 96]")
        if self.calibration_B < 0 or self.calibration_m < 2:
            bad("calibration_B/m", "need B >= 0 and m >= 2", "e.g. B: 1000, m: 50")
        if self.horizon_months is not None and self.horizon_months <= 0:
            bad("horizon_months", "must be positive (or null for no horizon)", "e.g. 120")


# --------------------------------------------------------------------------- discovery fit

_SINGULAR = "the fit has a singular information matrix (a group without events?)"


def _cox(data: pd.DataFrame, time: str, event: str, terms: Sequence[str], **kw: Any) -> Any:
    """``coxph``, or None when the fit is singular (monotone likelihood)."""
    try:
        return coxph(data, time, event, terms, **kw)
    except np.linalg.LinAlgError:
        return None


def apply_horizon(cohort: Cohort, s: CRLMSettings) -> Cohort:
    """METHODS 5.1: censor at the horizon (``censor``) or drop longer follow-up (``drop``)."""
    if s.horizon_months is None:
        return cohort
    data = cohort.data.copy()
    over = data[s.time] > s.horizon_months
    if not over.any():
        return cohort
    if s.horizon_policy == "censor":
        data.loc[over, s.event] = 0
        data.loc[over, s.time] = float(s.horizon_months)
        return Cohort(cohort.name, cohort.role, data, cohort.features, cohort.exclusions)
    dropped = exclusions(
        cohort.name,
        data.loc[over, "patient_id"],
        "horizon",
        f"follow-up beyond the {s.horizon_months:g}-month horizon (horizon_policy: drop)",
    )
    return Cohort(
        cohort.name,
        cohort.role,
        data[~over].reset_index(drop=True),
        cohort.features,
        pd.concat([cohort.exclusions, dropped], ignore_index=True),
    )


def sof_cutpoints(data: pd.DataFrame, features: Sequence[str], s: CRLMSettings) -> pd.DataFrame:
    """METHODS 5.2: maxstat log-rank cutpoint of every feature (survminer ``surv_cutpoint``).

    A feature that is all missing, constant or has no cutpoint with ``minprop`` of the
    patients on each side is not an error: its row has ``status`` ``skipped`` and the
    reason, and it takes no further part.

    Returns:
        One row per feature: feature, cutpoint, statistic, p_lau94, n, n_low, n_high,
        n_candidates, status (``ok``/``skipped``), reason.
    """
    t = data[s.time].to_numpy(float)
    e = data[s.event].to_numpy(float)
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
                res = maxstat_cutpoint(t, e, x, feature=f, minprop=s.minprop, maxprop=1 - s.minprop)
            except InputError as err:
                row["reason"] = err.problem
            else:
                row = {**res.summary.iloc[0].to_dict(), "status": "ok", "reason": ""}
        rows.append(row)
    cols = [
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
    ]
    return pd.DataFrame(rows).reindex(columns=cols)


def binarise(data: pd.DataFrame, cutpoints: Mapping[str, float]) -> pd.DataFrame:
    """``<feature>_high`` = 1 if value > cutpoint, 0 if not, NaN if the value is missing."""
    out = {}
    for f, cut in cutpoints.items():
        x = data[f].to_numpy(float)
        out[f + HIGH_SUFFIX] = np.where(np.isfinite(x), (x > cut).astype(float), np.nan)
    return pd.DataFrame(out, index=data.index)


def encode_factors(
    data: pd.DataFrame, factors: Sequence[str], where: str
) -> tuple[pd.DataFrame, list[str]]:
    """Numeric design columns for clinical factors.

    Numeric columns are used as they are; a text column with exactly two values becomes a
    0/1 indicator named ``<column>_<second value>`` (sorted; the first is the reference).

    Raises:
        InputError: a factor that is not a column, or a text column with more than two
            values (name the column and its values).
    """
    out: dict[str, np.ndarray] = {}
    for f in factors:
        if f not in data.columns:
            raise InputError(
                f"clinical factor '{f}' ({where})",
                "is not a column of the clinical table (nor derived: crs_high needs the CRS "
                "columns)",
                "add the column or remove it from config key crlm.clinical_factors",
            )
        col = data[f]
        if col.isna().all():
            raise InputError(
                f"clinical factor '{f}' ({where})",
                "has no value for any patient",
                "fill in the column or remove it from config key crlm.clinical_factors",
            )
        num = pd.to_numeric(col, errors="coerce")
        if (num.isna() & col.notna()).any():
            levels = sorted(col.dropna().astype(str).unique())
            if len(levels) != 2:
                raise InputError(
                    f"clinical factor '{f}' ({where})",
                    f"is text with {len(levels)} values {levels[:6]}; only two-level text "
                    "factors are coded automatically",
                    "dummy-code it as 0/1 columns and list those in crlm.clinical_factors",
                )
            name = f"{f}_{levels[1]}"
            out[name] = np.where(col.isna(), np.nan, (col.astype(str) == levels[1]).astype(float))
        else:
            out[f] = num.to_numpy(float)
    table = pd.DataFrame(out, index=data.index)
    return table, list(table.columns)


def univariate(
    data: pd.DataFrame, terms: Sequence[str], s: CRLMSettings, kind: str
) -> pd.DataFrame:
    """METHODS 5.3: one Efron Cox model per term (rows with a missing value dropped).

    Returns:
        Rows: kind, term, n, events, coef, se, z, hr, hr_lower, hr_upper, p_wald, p_lrt,
        note (a singular fit, e.g. a group without events, has NaN values and a note).
    """
    rows = []
    for term in terms:
        fit = _cox(
            data,
            s.time,
            s.event,
            [term],
            id_col="patient_id",
            missing="drop",
            with_concordance=False,
        )
        if fit is None:  # not a candidate: its p stays NaN
            rows.append({"kind": kind, "term": term, "note": _SINGULAR})
            continue
        row = fit.summary.iloc[0].to_dict()
        rows.append({"kind": kind, **row, "n": fit.n, "events": fit.n_events, "note": ""})
    cols = [
        "kind",
        "term",
        "n",
        "events",
        "coef",
        "se",
        "z",
        "hr",
        "hr_lower",
        "hr_upper",
        "p_wald",
        "p_lrt",
        "note",
    ]
    return pd.DataFrame(rows).reindex(columns=cols)


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
class CutoffResult:
    """METHODS 5.7: the score cutoff and the scanned groupings."""

    cutoff: float
    p: float
    test: str
    scan: pd.DataFrame = field(repr=False)


def _seq_splits(u: np.ndarray, lo: float, hi: float, step: float) -> tuple[np.ndarray, np.ndarray]:
    """The runs of R's ``seq(lo, hi, by = step)`` that split the sorted values ``u`` alike.

    Grid point ``c_j = lo + j * step`` (j = 0..n) puts ``k(j) = #{u < c_j}`` values low;
    ``k`` only changes at the first ``c_j`` above a value, so the runs are found from the
    values without building the grid (a score with a huge coefficient spans ~1e10 steps).

    Returns:
        (first j, last j) of each run of equal ``k``, in order.
    """
    n = int(math.floor((hi - lo) / step + 1e-10))
    inside = u[(u >= lo) & (u < lo + n * step)]
    j = np.floor((inside - lo) / step).astype(np.int64) + 1
    j = np.where(lo + step * j <= inside, j + 1, j)  # c_j must exceed the value ...
    j = np.where(lo + step * (j - 1) > inside, j - 1, j)  # ... and c_(j-1) must not
    first = np.unique(np.r_[0, j[j <= n]])
    return first, np.r_[first[1:] - 1, n]


def optimal_cutoff(
    data: pd.DataFrame, score: str, s: CRLMSettings, *, patient_ids: str = "patient_id"
) -> CutoffResult:
    """METHODS 5.7: the first cutoff c with the smallest p of a test of ``score >= c``.

    Cutoffs c are scanned from the ``cutoff_range`` quantiles of the score in steps of
    ``cutoff_step`` (R's ``seq``). Every c that gives the same split gives the same p,
    so only the distinct splits are tested (the first c of each split is reported).

    Returns:
        A :class:`CutoffResult`; ``scan`` has one row per distinct split: cutoff (its
        first c), last_c, n_high, n_low, p.

    Raises:
        InputError: the score takes a single value in the scanned range.
    """
    x = data[score].to_numpy(float)
    lo, hi = np.quantile(x, s.cutoff_range, method="linear")
    u = np.unique(x)
    first, last = _seq_splits(u, float(lo), float(hi), s.cutoff_step)
    ks = np.searchsorted(u, lo + s.cutoff_step * first, side="left")
    rows = []
    for kk, f0, f1 in zip(ks, first, last, strict=True):
        if kk == 0 or kk >= len(u):
            continue
        high = (x >= u[kk]).astype(float)
        d = pd.DataFrame(
            {
                s.time: data[s.time].to_numpy(),
                s.event: data[s.event].to_numpy(),
                "g": high,
                patient_ids: data[patient_ids].to_numpy(),
            }
        )
        if s.cutoff_test == "wald":
            fit = _cox(d, s.time, s.event, ["g"], with_concordance=False)
            p = math.nan if fit is None else float(fit.p_wald[0])
        else:
            p = logrank(d, s.time, s.event, "g").p
        rows.append(
            {
                "cutoff": lo + s.cutoff_step * f0,
                "last_c": lo + s.cutoff_step * f1,
                "n_high": int(high.sum()),
                "n_low": int(len(x) - high.sum()),
                "p": p,
            }
        )
    scan = pd.DataFrame(rows, columns=["cutoff", "last_c", "n_high", "n_low", "p"])
    if scan.empty:
        raise InputError(
            "risk score",
            f"takes a single value between its {s.cutoff_range[0]:.0%} and "
            f"{s.cutoff_range[1]:.0%} quantiles, so no cutoff splits the discovery cohort",
            "widen config key crlm.cutoff_range",
        )
    if scan["p"].isna().all():
        raise InputError("risk score", f"no split gives a usable Cox fit: {_SINGULAR}", "")
    best = int(np.nanargmin(scan["p"].to_numpy()))  # first minimum, as R's which.min
    return CutoffResult(float(scan["cutoff"][best]), float(scan["p"][best]), s.cutoff_test, scan)


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


def fit_discovery(
    cohort: Cohort, s: CRLMSettings, thresholds: Mapping[str, float] | None = None
) -> tuple[CRLMModel, pd.DataFrame]:
    """METHODS 5.2-5.7 on the discovery cohort (after :func:`apply_horizon`).

    Returns:
        (the model, exclusion rows of patients left out of the stepwise fit because a
        candidate feature is missing).

    Raises:
        InputError: fewer than ``min_events`` events; no usable feature; no candidate
            with LRT p < ``candidate_p``; stepwise selection keeping no feature.
    """
    data = cohort.data
    n_events = int(data[s.event].sum())
    if n_events < s.min_events:
        raise InputError(
            f"discovery cohort '{cohort.name}'",
            f"only {n_events} events among {len(data)} patients (need >= {s.min_events} to "
            "fit a model)",
            "use a larger cohort, or lower config key crlm.min_events at your own risk",
        )
    cuts = sof_cutpoints(data, cohort.features, s)
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
    uni = univariate(bdata, list(binary.columns), s, "sof")
    uni.insert(2, "feature", usable)
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
    complete = bdata[terms].notna().all(axis=1)
    excl = exclusions(
        cohort.name,
        bdata.loc[~complete, "patient_id"],
        "stepwise",
        [
            "missing " + ", ".join(t.removesuffix(HIGH_SUFFIX) for t in terms if np.isnan(r[t]))
            for _, r in bdata[~complete].iterrows()
        ],
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
    cutoff = optimal_cutoff(scored, "score", s)
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
        },
        step_path=step.path,
    )
    return model, excl


# --------------------------------------------------------------------------- every cohort


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
    complete = binary.notna().all(axis=1)
    excl = exclusions(
        cohort.name,
        data.loc[~complete, "patient_id"],
        "score",
        [
            "missing model feature(s) " + ", ".join(f for f in feats if np.isnan(r[f]))
            for _, r in data[~complete].iterrows()
        ],
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


@dataclass(frozen=True)
class GroupSurvival:
    """KM curves, per-group summaries and tests of one grouping in one cohort."""

    cohort: str
    analysis: str
    subset: str
    curves: dict[str, KMResult]
    groups: pd.DataFrame
    tests: pd.DataFrame


def group_survival(
    table: pd.DataFrame,
    group: str,
    labels: Sequence[str],
    s: CRLMSettings,
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
        events, median (+ CI), surv_<t>, surv_<t>_lower/_upper; ``tests`` rows: cohort,
        analysis, subset, comparison, group_a, group_b, n, chisq, df, p, hr, hr_lower,
        hr_upper, p_wald, note (``hr`` = hazard of group_b vs group_a).
    """
    sub = table[table[group].isin(labels)]
    at = s.survival_at
    curves: dict[str, KMResult] = {}
    grows = []
    for lab in labels:
        g = sub[sub[group] == lab]
        row: dict[str, Any] = {
            "cohort": cohort,
            "analysis": analysis,
            "subset": subset,
            "group": lab,
            "n": len(g),
            "events": int(g[s.event].sum()),
        }
        if len(g) and g[s.event].sum() > 0:
            km = kaplan_meier(g, s.time, s.event, label=f"{lab} (n={len(g)})")
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
        grows.append(row)
    trows = []
    pairs = list(combinations(labels, 2))
    comps: list[tuple[str, list[str]]] = []
    if len(labels) > 2:
        comps.append(("overall", list(labels)))
    comps += [("pairwise" if len(labels) > 2 else "two-group", [a, b]) for a, b in pairs]
    for comp, labs in comps:
        d = sub[sub[group].isin(labs)]
        row = {
            "cohort": cohort,
            "analysis": analysis,
            "subset": subset,
            "comparison": comp,
            "group_a": labs[0] if len(labs) == 2 else "",
            "group_b": labs[-1] if len(labs) == 2 else "",
            "groups": "|".join(map(str, labs)),
            "n": len(d),
            "note": "",
        }
        try:
            lr = logrank(d, s.time, s.event, group)
            row.update(chisq=lr.chisq, df=lr.df, p=lr.p)
            if len(labs) == 2:
                d = d.assign(_b=(d[group] == labs[1]).astype(float))
                fit = _cox(d, s.time, s.event, ["_b"], with_concordance=False)
                if fit is None:
                    raise InputError("Cox model", _SINGULAR, "")
                lo, hi = fit.hr_ci()
                row.update(hr=fit.hr[0], hr_lower=lo[0], hr_upper=hi[0], p_wald=fit.p_wald[0])
        except InputError as err:
            row["note"] = err.problem
        trows.append(row)
    gcols = [
        "cohort",
        "analysis",
        "subset",
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
    tcols = [
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
    ]
    return GroupSurvival(
        cohort,
        analysis,
        subset,
        curves,
        pd.DataFrame(grows).reindex(columns=gcols),
        pd.DataFrame(trows).reindex(columns=tcols),
    )


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
    design, names = encode_factors(sc.table, s.clinical_factors, where)
    d = pd.concat([sc.table[["patient_id", s.time, s.event, "sof_high"]], design], axis=1)
    terms = ["sof_high", *names]
    complete = d[terms].notna().all(axis=1)
    excl = exclusions(
        sc.name,
        d.loc[~complete, "patient_id"],
        "multivariate",
        [
            "missing " + ", ".join(t for t in names if pd.isna(r[t]))
            for _, r in d[~complete].iterrows()
        ],
    )
    d = d[complete]
    constant = [t for t in terms if d[t].nunique() < 2]
    use = [t for t in terms if t not in constant]
    fit = _cox(d, s.time, s.event, use, id_col="patient_id", with_concordance=False)
    if fit is None:
        raise InputError(
            f"multivariate Cox model of {where}",
            f"{_SINGULAR} with terms {use}",
            "remove the clinical factor that separates the events from crlm.clinical_factors",
        )
    table = fit.summary.assign(n=fit.n, events=fit.n_events, note="")
    notes = pd.DataFrame(
        {"term": constant, "note": "constant in this cohort; left out of the model"}
    )
    return pd.concat([table, notes], ignore_index=True), excl


_COMPARE_COLS = ["marker_a", "marker_b", "time", "delta_auc", "se_delta", "z", "p"]


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
    ``roc_times`` (tables) and on a grid every ``roc_curve_step`` months (curves).

    Returns:
        (time_roc rows: cohort, marker, time, auc, se, lower, upper, cases, controls,
        censored, n; comparison rows: cohort, marker_a, marker_b, time, delta_auc,
        se_delta, z, p; curve results on the grid).
    """
    markers = _markers(sc)
    d = sc.table.dropna(subset=list(markers.values()))
    t, e = d[s.time].to_numpy(float), d[s.event].to_numpy(float)
    # at or beyond the last follow-up time there are no controls (G(t) = 0): noted, not fitted
    times = [u for u in s.roc_times if u < t.max()]
    late = [u for u in s.roc_times if u >= t.max()]
    res = {m: time_roc(t, e, d[c], times, name=m) for m, c in markers.items()} if times else {}
    auc = pd.concat(
        [r.summary.assign(note="") for r in res.values()]
        + [
            pd.DataFrame({"marker": list(markers), "time": u, "note": "beyond the follow-up"})
            for u in late
        ],
        ignore_index=True,
    )
    auc.insert(0, "cohort", sc.name)
    auc["n"] = len(d)
    comps = [compare_auc(res[a], res[b]) for a, b in combinations(res, 2)]
    comp = pd.concat(comps, ignore_index=True) if comps else pd.DataFrame(columns=_COMPARE_COLS)
    comp.insert(0, "cohort", sc.name)
    top = min(float(np.quantile(t, 0.9)), float(s.horizon_months or np.inf))
    grid = np.arange(s.roc_curve_step, top + 1e-9, s.roc_curve_step)
    grid = grid[grid < t.max()]
    curves = [time_roc(t, e, d[c], grid, name=m) for m, c in markers.items()] if len(grid) else []
    return auc, comp, curves


def calibration_analysis(
    sc: ScoredCohort, s: CRLMSettings
) -> tuple[pd.DataFrame, dict[float, CalibrationResult]]:
    """METHODS 5.12: bootstrap-corrected calibration of Cox(score) at ``calibration_times``.

    A time beyond the cohort's follow-up gives a row with a note instead of an error.

    Returns:
        (rows: cohort, time, the calibration table columns, note; results by time).
    """
    rows = []
    out: dict[float, CalibrationResult] = {}
    for u in s.calibration_times:
        try:
            res = calibrate(
                sc.table,
                s.time,
                s.event,
                ["score"],
                float(u),
                m=s.calibration_m,
                B=s.calibration_B,
                seed=s.seed,
                id_col="patient_id",
            )
        except InputError as err:
            rows.append(pd.DataFrame([{"cohort": sc.name, "time": u, "note": err.problem}]))
            continue
        out[float(u)] = res
        rows.append(res.table.assign(cohort=sc.name, time=u, n_failed_boot=res.b_failed, note=""))
    table = pd.concat(rows, ignore_index=True)
    first = ["cohort", "time"]
    return table[first + [c for c in table.columns if c not in first]], out


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
                    "adjuvant",
                    ["no", "yes"],
                    s,
                    cohort=sc.name,
                    analysis="adjuvant",
                    subset=subset,
                )
            )
    return out


# --------------------------------------------------------------------------- whole analysis


@dataclass
class CRLMResult:
    """Everything :func:`run_crlm` produces: the model, tables and figure inputs."""

    model: CRLMModel
    settings: CRLMSettings
    discovery: str
    scored: dict[str, ScoredCohort]
    tables: dict[str, pd.DataFrame]
    multivariate: dict[str, pd.DataFrame]
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
) -> CRLMResult:
    """The whole CRLM analysis: fit on the one discovery cohort, apply to all cohorts.

    Raises:
        InputError: not exactly one discovery cohort, or any step's input error.
    """
    from histoprog.analysis.descriptives import associations, followup, table1

    disc = [c for c in cohorts if c.role == "discovery"]
    if len(disc) != 1:
        raise InputError(
            "cohort sheet",
            f"the CRLM analysis needs exactly one discovery cohort, got {len(disc)} "
            f"({format_ids([c.name for c in disc])})",
            "set role: discovery on one crlm cohort and validation on the others",
        )
    cohorts = [apply_horizon(c, s) for c in cohorts]
    discovery = next(c for c in cohorts if c.role == "discovery")
    model, excl_fit = fit_discovery(discovery, s, thresholds)
    excl = [c.exclusions for c in cohorts] + [excl_fit]
    scored: dict[str, ScoredCohort] = {}
    survival: list[GroupSurvival] = []
    mv: dict[str, pd.DataFrame] = {}
    roc, roc_cmp, curves, cal_rows, cal = [], [], {}, [], {}
    notes: list[str] = []
    for c in cohorts:
        sc, ex = score_cohort(c, model, s)
        scored[c.name] = sc
        excl.append(ex)
        t = sc.table
        survival.append(
            group_survival(
                t, "risk_group", ["Low", "High"], s, cohort=c.name, analysis="sof_risk_group"
            )
        )
        if sc.has_crs:
            t = t.assign(crs_group=t["crs_high"].map({0.0: "Low", 1.0: "High"}))
            survival.append(
                group_survival(t, "crs_group", ["Low", "High"], s, cohort=c.name, analysis="crs")
            )
            survival.append(
                group_survival(
                    t,
                    "grade_label",
                    list(GRADE_LABELS),
                    s,
                    cohort=c.name,
                    analysis="combined_grade",
                )
            )
            n_missing = int(t["crs"].isna().sum())
            if n_missing:
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
        a, b, cur = roc_analysis(sc, s)
        roc.append(a)
        roc_cmp.append(b)
        curves[c.name] = cur
        table, results = calibration_analysis(sc, s)
        cal_rows.append(table)
        cal[c.name] = results
    tables = {
        "cutpoints": model.tables["cutpoints"],
        "univariate_cox": _with_clinical_univariate(model, scored[discovery.name], s),
        "correlation": model.tables["correlation"],
        "cutoff_scan": model.tables["cutoff_scan"],
        "stepwise": model.step_path,
        "risk_scores": _risk_scores(scored, model, s),
        "logrank": pd.concat([g.tests for g in survival], ignore_index=True),
        "km_groups": pd.concat([g.groups for g in survival], ignore_index=True),
        "time_roc": pd.concat(roc, ignore_index=True),
        "time_roc_compare": pd.concat(roc_cmp, ignore_index=True),
        "calibration": pd.concat(cal_rows, ignore_index=True),
        "exclusions": pd.concat([e for e in excl if not e.empty] or [excl[0]], ignore_index=True),
    }
    tables["table1"] = table1(scored, s)
    tables["followup"] = followup(scored, s)
    tables["associations"] = associations(scored, model.features(), s)
    return CRLMResult(model, s, discovery.name, scored, tables, mv, survival, curves, cal, notes)


def _with_clinical_univariate(model: CRLMModel, sc: ScoredCohort, s: CRLMSettings) -> pd.DataFrame:
    """The SOF univariate table plus one row per clinical factor (discovery)."""
    design, names = encode_factors(sc.table, s.clinical_factors, f"cohort '{sc.name}'")
    d = pd.concat([sc.table[["patient_id", s.time, s.event]], design], axis=1)
    names = [n for n in names if d[n].nunique() > 1]
    clin = univariate(d, names, s, "clinical")
    clin.insert(2, "feature", names)
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
        [sc.table[cols].assign(cohort=name)[["cohort", *cols]] for name, sc in scored.items()],
        ignore_index=True,
    )
