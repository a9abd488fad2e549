"""Bootstrap-corrected calibration of a Cox model of one cohort at several times."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from histoprog.analysis.outcome import Outcome
from histoprog.errors import InputError
from histoprog.survival import CalibrationResult, calibrate

__all__ = ["calibration_table"]


def calibration_table(
    table: pd.DataFrame,
    outcome: Outcome,
    terms: Sequence[str],
    times: Sequence[float],
    *,
    m: int,
    B: int,  # noqa: N803
    seed: int,
    cohort: str,
) -> tuple[pd.DataFrame, dict[float, CalibrationResult]]:
    """``rms::calibrate`` of Cox(``terms``) at every time (``m`` per group, ``B`` resamples).

    A time the cohort cannot be calibrated at (e.g. beyond its follow-up) gives a row with
    a note instead of an error.

    Returns:
        (rows: cohort, time, the calibration table columns, n_failed_boot, note; results
        by time).
    """
    rows = []
    out: dict[float, CalibrationResult] = {}
    for u in times:
        try:
            res = calibrate(
                table,
                outcome.time,
                outcome.event,
                list(terms),
                float(u),
                m=m,
                B=B,
                seed=seed,
                id_col="patient_id",
            )
        except InputError as err:
            rows.append(pd.DataFrame([{"cohort": cohort, "time": u, "note": err.problem}]))
            continue
        out[float(u)] = res
        rows.append(res.table.assign(cohort=cohort, time=u, n_failed_boot=res.b_failed, note=""))
    result = pd.concat(rows, ignore_index=True)
    first = ["cohort", "time"]
    return result[first + [c for c in result.columns if c not in first]], out
