"""Survival statistics that no maintained Python library provides, each checked against R.

Modules (one concern each): :mod:`.cox` (``coxph``), :mod:`.maxstat` (``maxstat.test``
cutpoints), :mod:`.stepwise` (``MASS::stepAIC``), :mod:`.timeroc` (``timeROC`` and
``compare``), :mod:`.calibration` (``rms::calibrate``), :mod:`.km` (``survfit``/``survdiff``
through lifelines).
"""

from histoprog.survival.calibration import CalibrationResult, calibrate
from histoprog.survival.cox import Concordance, CoxResult, concordance, cox_univariate, coxph
from histoprog.survival.km import KMResult, LogrankResult, kaplan_meier, logrank, median_followup
from histoprog.survival.maxstat import MaxstatResult, maxstat_cutpoint, maxstat_cutpoints
from histoprog.survival.stepwise import StepResult, step_aic
from histoprog.survival.timeroc import TimeROCResult, compare_auc, plot_auc_curves, time_roc

__all__ = [
    "CalibrationResult",
    "Concordance",
    "CoxResult",
    "KMResult",
    "LogrankResult",
    "MaxstatResult",
    "StepResult",
    "TimeROCResult",
    "calibrate",
    "compare_auc",
    "concordance",
    "cox_univariate",
    "coxph",
    "kaplan_meier",
    "logrank",
    "maxstat_cutpoint",
    "maxstat_cutpoints",
    "median_followup",
    "plot_auc_curves",
    "step_aic",
    "time_roc",
]
