"""The survival outcome every cohort step reads, and the follow-up horizon (METHODS 5.1).

A cohort step takes a table with one row per patient (``patient_id``) and an
:class:`Outcome` naming its time and event columns; nothing else about the analysis it
belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from histoprog.analysis.features import Cohort, exclusions
from histoprog.errors import InputError

__all__ = ["HORIZON_POLICIES", "Outcome", "apply_horizon"]

HORIZON_POLICIES: tuple[str, ...] = ("censor", "drop")
"""What :func:`apply_horizon` does with follow-up beyond the horizon."""


@dataclass(frozen=True)
class Outcome:
    """Time (months) and 0/1 event columns of a cohort table."""

    time: str
    event: str


def apply_horizon(cohort: Cohort, outcome: Outcome, horizon: float | None, policy: str) -> Cohort:
    """Censor at the horizon (``censor``) or drop longer follow-up (``drop``).

    Dropped patients become exclusion rows (step ``horizon``); ``horizon`` None or no
    follow-up beyond it returns the cohort unchanged.

    Raises:
        InputError: an unknown policy.
    """
    if policy not in HORIZON_POLICIES:
        raise InputError("horizon policy", f"unknown value {policy!r}", "use censor or drop")
    if horizon is None:
        return cohort
    data = cohort.data.copy()
    over = data[outcome.time] > horizon
    if not over.any():
        return cohort
    if policy == "censor":
        data.loc[over, outcome.event] = 0
        data.loc[over, outcome.time] = float(horizon)
        return Cohort(cohort.name, cohort.role, data, cohort.features, cohort.exclusions)
    dropped = exclusions(
        cohort.name,
        data.loc[over, "patient_id"],
        "horizon",
        f"follow-up beyond the {horizon:g}-month horizon (horizon_policy: drop)",
    )
    return Cohort(
        cohort.name,
        cohort.role,
        data[~over].reset_index(drop=True),
        cohort.features,
        pd.concat([cohort.exclusions, dropped], ignore_index=True),
    )
