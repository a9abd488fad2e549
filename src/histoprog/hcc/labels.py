"""Training labels of the MIL model from the clinical table (METHODS 6.6).

good (y = 1): no recurrence and follow-up of at least ``good_months`` (48);
poor (y = 0): recurrence before ``poor_months`` (19.2 = 1.6 years);
every other patient (recurrence later, or censored earlier) is left out of training.
"""

from __future__ import annotations

import pandas as pd

from histoprog.errors import InputError

GOOD, POOR, LEFT_OUT = "good", "poor", "left_out"


def mil_labels(
    clinical: pd.DataFrame,
    time: str,
    event: str,
    good_months: float = 48.0,
    poor_months: float = 19.2,
) -> pd.DataFrame:
    """One row per patient: ``patient_id``, time, event, ``label`` (good/poor/left_out), ``y``.

    ``y`` is 1 for good, 0 for poor and missing for patients left out. A patient with a
    missing time or event is left out.

    Raises:
        InputError: thresholds with ``poor_months > good_months`` or not positive.
    """
    if not 0 < poor_months <= good_months:
        raise InputError(
            "MIL label thresholds",
            f"poor_months={poor_months}, good_months={good_months}",
            "use 0 < hcc.mil.poor_months <= hcc.mil.good_months (19.2 and 48 published)",
        )
    t = pd.to_numeric(clinical[time], errors="coerce")
    e = pd.to_numeric(clinical[event], errors="coerce")
    good = (e == 0) & (t >= good_months)
    poor = (e == 1) & (t < poor_months)
    label = pd.Series(LEFT_OUT, index=clinical.index)
    label[good] = GOOD
    label[poor] = POOR
    return pd.DataFrame(
        {
            "patient_id": clinical["patient_id"].astype(str),
            time: t,
            event: e,
            "label": label,
            "y": good.astype(float).where(good | poor),
        }
    )


def label_counts(labels: pd.DataFrame) -> dict[str, int]:
    """Patients per label (good, poor, left_out)."""
    counts = labels["label"].value_counts()
    return {k: int(counts.get(k, 0)) for k in (GOOD, POOR, LEFT_OUT)}


def check_classes(
    counts: dict[str, int], where: str, good_months: float, poor_months: float
) -> None:
    """Both classes need slides.

    Raises:
        InputError: no slide in the good or in the poor class.
    """
    empty = [k for k in (GOOD, POOR) if counts[k] == 0]
    if empty:
        raise InputError(
            where,
            f"has no slide in the {' and '.join(empty)} class (good = no recurrence with "
            f">= {good_months:g} months of follow-up, poor = recurrence before "
            f"{poor_months:g} months; counts {counts})",
            "train on a cohort with both outcomes, or adjust hcc.mil.good_months / poor_months",
        )
