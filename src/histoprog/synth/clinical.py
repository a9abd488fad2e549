"""Clinical variables and survival times drawn from known (planted) Cox models.

CRLM (overall survival, months): hazard ``h(t) = h0(t) exp(beta . x)`` with a Weibull
baseline ``h0(t) = (k / lam) (t / lam)^(k - 1)`` and ``x`` = two true SOFs (see
:data:`CRLM_MODEL`) dichotomised at fixed cutpoints (``value > cutpoint``) plus Fong CRS
high (3-5 points). The true SOFs are computed by :func:`histoprog.sof.compute_sofs` on
the true class grid with the fixed true infiltration thresholds :data:`TRUE_THRESHOLDS`.
Censoring: uniform loss to follow-up, then administrative censoring at the horizon (120
months).

HCC (recurrence-free survival, months): a latent risk ``z ~ N(0, 1)`` drives both the
nuclear atypia of the tumour tiles (:func:`atypia_of`) and the hazard, together with
vascular invasion and tumour size.

The models (:data:`CRLM_MODEL`, :data:`HCC_MODEL`) are written to ``truth.json``.
Effect sizes are chosen so that ~60 discovery + ~60 validation patients detect them
(see ``tests/test_synth_clinical.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace

import numpy as np

__all__ = [
    "TRUE_THRESHOLDS",
    "SurvivalModel",
    "CRLM_MODEL",
    "HCC_MODEL",
    "crlm_clinical",
    "crs_points",
    "crlm_design",
    "draw_survival",
    "hcc_patient",
    "hcc_design",
    "atypia_of",
    "hcc_model",
    "crlm_model",
]

TRUE_THRESHOLDS: dict[str, float] = {c: 2.0 for c in ("STR", "LYM", "HEP", "MUC", "DEB")}
"""True infiltrating/distal distance thresholds (tiles) of every non-tumour class.

The layout puts margin lymphocytes and stromal rims within 2 tiles of the tumour region
and distal aggregates and portal tracts at least 3 tiles away.
"""


@dataclass(frozen=True)
class SurvivalModel:
    """A planted proportional-hazards model with Weibull baseline and censoring.

    Attributes:
        coefficients: log hazard ratio per covariate of the design (see ``crlm_design`` /
            ``hcc_design``).
        cutpoints: SOF cutpoints (``x = value > cutpoint``); empty for HCC.
        shape: Weibull shape ``k`` of the baseline.
        scale: Weibull scale ``lam`` (months) of the baseline (at linear predictor 0).
        censor_min: loss to follow-up is uniform on [censor_min, censor_max] months.
        censor_max: see ``censor_min``.
        horizon: administrative censoring time (months).
        time_column: name of the time column in clinical.tsv.
        event_column: name of the event column in clinical.tsv.
    """

    coefficients: dict[str, float]
    cutpoints: dict[str, float] = field(default_factory=dict)
    shape: float = 1.2
    scale: float = 150.0
    censor_min: float = 12.0
    censor_max: float = 180.0
    horizon: float = 120.0
    time_column: str = "os_months"
    event_column: str = "os_event"

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly form, with a plain-language description of the baseline."""
        out = asdict(self)
        out["baseline"] = f"Weibull: S0(t) = exp(-(t / {self.scale:g})^{self.shape:g}), t in months"
        out["censoring"] = (
            f"uniform({self.censor_min:g}, {self.censor_max:g}) months, then "
            f"administrative at {self.horizon:g} months"
        )
        return out


CRLM_MODEL = SurvivalModel(
    coefficients={
        "overall_DEB_high": 1.2,
        "overall_LYM_high": -1.2,
        "crs_high": 0.7,
    },
    cutpoints={"overall_DEB": 0.07, "overall_LYM": 0.07},
)
"""Planted CRLM model: necrotic debris harms, lymphocytes protect (as in the CRLM-SPA
paper's direction of effect), plus CRS high.

The planted SOFs are ``overall_`` features on purpose: the analysis's collinearity filter
(METHODS 5.4) keeps the ``overall_`` member of every correlated pair, and in these layouts
each family's spatial features follow its overall share closely (``interaction_LYM`` vs
``overall_LYM`` r = 0.93, ``interaction_HEP`` vs ``overall_HEP`` 0.89 on 200 generated
patients), so a planted spatial feature would be replaced by its overall partner and the
"selects the planted features" check could not tell right from wrong."""

HCC_MODEL = SurvivalModel(
    coefficients={"risk": 1.0, "vascular_invasion": 0.5, "size_gt_5cm": 0.35},
    shape=1.1,
    scale=90.0,
    censor_min=24.0,
    censor_max=150.0,
    horizon=120.0,
    time_column="rfs_months",
    event_column="recurrence",
)
"""Planted HCC model: the latent risk (shown as nuclear atypia) dominates."""


def crlm_clinical(rng: np.random.Generator) -> dict[str, float | int | str]:
    """Clinical variables of one CRLM patient (Fong CRS variables and others).

    Returns:
        ``age`` (years), ``sex`` (M/F), ``node_positive`` (0/1), ``dfi_months``,
        ``n_metastases``, ``max_diameter_cm``, ``cea`` (ng/mL), ``preop_chemo`` (0/1),
        ``adjuvant_chemo`` (0/1).
    """
    synchronous = rng.random() < 0.35
    dfi = 0.0 if synchronous else float(np.exp(rng.normal(math.log(18.0), 0.9)))
    return {
        "age": int(np.clip(round(rng.normal(58.0, 11.0)), 25, 85)),
        "sex": "M" if rng.random() < 0.62 else "F",
        "node_positive": int(rng.random() < 0.55),
        "dfi_months": round(dfi, 1),
        "n_metastases": int(1 + rng.poisson(0.7)),
        "max_diameter_cm": round(float(np.exp(rng.normal(math.log(3.2), 0.55))), 1),
        "cea": round(float(np.exp(rng.normal(math.log(12.0), 2.0))), 1),
        "preop_chemo": int(rng.random() < 0.4),
        "adjuvant_chemo": int(rng.random() < 0.6),
    }


def crs_points(clin: Mapping[str, float | int | str]) -> int:
    """Fong clinical risk score (0-5), METHODS 5.9.

    One point each: node-positive primary, DFI < 12 months, more than one metastasis,
    largest diameter > 5 cm, CEA > 200 ng/mL.
    """
    return (
        int(int(clin["node_positive"]) == 1)
        + int(float(clin["dfi_months"]) < 12)
        + int(int(clin["n_metastases"]) > 1)
        + int(float(clin["max_diameter_cm"]) > 5)
        + int(float(clin["cea"]) > 200)
    )


def crlm_design(
    sofs: Mapping[str, float], clin: Mapping[str, float | int | str], model: SurvivalModel
) -> dict[str, int]:
    """Covariates of the planted CRLM model: ``<sof>_high`` and ``crs_high`` (0/1).

    A NaN SOF (a slide without a tumour region) counts as low.
    """
    x = {}
    for sof, cut in model.cutpoints.items():
        value = float(sofs[sof])
        x[f"{sof}_high"] = int(not math.isnan(value) and value > cut)
    x["crs_high"] = int(crs_points(clin) >= 3)
    return x


def draw_survival(
    x: Mapping[str, float], model: SurvivalModel, rng: np.random.Generator
) -> tuple[float, int, float]:
    """Draw an observed time and event from the planted model.

    Args:
        x: covariates (every key of ``model.coefficients``).
        model: the planted model.
        rng: the patient's survival generator (two draws: event time, censoring time).

    Returns:
        (time in months rounded to 0.01, event 0/1, linear predictor).
    """
    lp = float(sum(beta * float(x[name]) for name, beta in model.coefficients.items()))
    e = rng.exponential()
    t_event = model.scale * (e / math.exp(lp)) ** (1.0 / model.shape)
    t_censor = min(rng.uniform(model.censor_min, model.censor_max), model.horizon)
    t = max(round(min(t_event, t_censor), 2), 0.01)
    return t, int(t_event <= t_censor), lp


def atypia_of(risk: float, slope: float = 1.3) -> float:
    """Nuclear atypia (0-1) of HCC tumour tiles for a latent risk: logistic(slope risk)."""
    return 1.0 / (1.0 + math.exp(-slope * risk))


def crlm_model(sof_effect: float = 1.0) -> SurvivalModel:
    """The planted CRLM model with its SOF log hazard ratios multiplied by ``sof_effect``.

    The CRS coefficient is kept. 1.0 needs ~60 + 60 patients to find the planted SOFs; the
    demo and the planted-truth workflow test use 2.0 with 40 + 40 (on the true SOFs of 8
    seed pairs, 16 x 16 grids, the analysis then selects both planted SOFs and validates,
    p < 0.05, in 6).
    """
    coefficients = {
        k: v if k == "crs_high" else v * sof_effect for k, v in CRLM_MODEL.coefficients.items()
    }
    return replace(CRLM_MODEL, coefficients=coefficients)


def hcc_model(risk_effect: float = 1.0) -> SurvivalModel:
    """The planted HCC model with ``risk_effect`` as the latent risk's log hazard ratio."""
    return replace(HCC_MODEL, coefficients={**HCC_MODEL.coefficients, "risk": risk_effect})


def hcc_patient(rng: np.random.Generator) -> tuple[float, dict[str, float | int | str]]:
    """Latent risk and clinical variables of one HCC patient.

    Returns:
        (risk, clinical) with ``age``, ``sex``, ``tumour_size_cm``, ``n_tumours``,
        ``vascular_invasion`` (0/1), ``afp`` (ng/mL), ``differentiation_grade`` (1-3),
        ``bclc_stage`` (0/A/B/C); grade, AFP and vascular invasion correlate with the risk.
    """
    risk = float(rng.normal())
    size = float(np.exp(rng.normal(math.log(4.5) + 0.15 * risk, 0.5)))
    n_tum = int(1 + rng.poisson(0.4))
    vi = int(rng.random() < 1.0 / (1.0 + math.exp(1.0 - 0.8 * risk)))
    afp = float(np.exp(rng.normal(math.log(50.0) + 0.8 * risk, 2.0)))
    g = risk + rng.normal(0.0, 1.0)
    grade = 1 if g < -0.8 else 2 if g < 0.8 else 3
    if vi:
        bclc = "C"
    elif n_tum > 1 and size > 3:
        bclc = "B"
    elif size < 2 and n_tum == 1:
        bclc = "0"
    else:
        bclc = "A"
    return risk, {
        "age": int(np.clip(round(rng.normal(58.0, 10.0)), 25, 85)),
        "sex": "M" if rng.random() < 0.8 else "F",
        "tumour_size_cm": round(size, 1),
        "n_tumours": n_tum,
        "vascular_invasion": vi,
        "afp": round(afp, 1),
        "differentiation_grade": grade,
        "bclc_stage": bclc,
    }


def hcc_design(risk: float, clin: Mapping[str, float | int | str]) -> dict[str, float]:
    """Covariates of the planted HCC model."""
    return {
        "risk": risk,
        "vascular_invasion": float(clin["vascular_invasion"]),
        "size_gt_5cm": float(float(clin["tumour_size_cm"]) > 5),
    }
