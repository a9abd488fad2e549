"""Cox tables of one cohort: clinical factor coding, univariate Cox, a multivariable model.

Every table has the contract's columns ``coef``, ``se``, ``z``, ``hr``, ``hr_lower``,
``hr_upper``, ``p_wald``, ``p_lrt``, ``n``, ``events`` and ``note``; a fit that cannot be
made is a row with a note, never an exception, so one small cohort never stops an
analysis (callers that must have the fit raise themselves).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from histoprog.analysis.outcome import Outcome
from histoprog.errors import InputError
from histoprog.survival import CoxResult, cox_univariate, coxph
from histoprog.survival.cox import SINGULAR

__all__ = [
    "CoxModel",
    "cox_or_none",
    "encode_factors",
    "multivariate_cox",
    "univariate_table",
]


def cox_or_none(
    data: pd.DataFrame, outcome: Outcome, terms: Sequence[str], **kw: Any
) -> CoxResult | None:
    """``coxph`` of ``terms``, or None when the fit is singular (monotone likelihood)."""
    try:
        return coxph(data, outcome.time, outcome.event, terms, **kw)
    except np.linalg.LinAlgError:
        return None


def encode_factors(
    data: pd.DataFrame, factors: Sequence[str], where: str, config_key: str
) -> tuple[pd.DataFrame, list[str]]:
    """Numeric design columns for clinical factors.

    Numeric columns are used as they are; a text column with exactly two values becomes a
    0/1 indicator named ``<column>_<second value>`` (sorted; the first is the reference).

    Args:
        data: the cohort table.
        factors: its factor columns.
        where: the cohort, for messages.
        config_key: the config key listing the factors, for messages.

    Raises:
        InputError: a factor that is not a column, has no value, or is text with more than
            two values (naming the column and its values).
    """
    out: dict[str, np.ndarray] = {}
    for f in factors:
        what = f"clinical factor '{f}' ({where})"
        if f not in data.columns:
            raise InputError(
                what,
                "is not a column of the clinical table",
                f"add the column or remove it from config key {config_key}",
            )
        col = data[f]
        if col.isna().all():
            raise InputError(
                what,
                "has no value for any patient",
                f"fill in the column or remove it from config key {config_key}",
            )
        num = pd.to_numeric(col, errors="coerce")
        if (num.isna() & col.notna()).any():
            levels = sorted(col.dropna().astype(str).unique())
            if len(levels) != 2:
                raise InputError(
                    what,
                    f"is text with {len(levels)} values {levels[:6]}; only two-level text "
                    "factors are coded automatically",
                    f"dummy-code it as 0/1 columns and list those in {config_key}",
                )
            name = f"{f}_{levels[1]}"
            out[name] = np.where(col.isna(), np.nan, (col.astype(str) == levels[1]).astype(float))
        else:
            out[f] = num.to_numpy(float)
    table = pd.DataFrame(out, index=data.index)
    return table, list(table.columns)


def univariate_table(
    data: pd.DataFrame, outcome: Outcome, terms: Sequence[str], kind: str
) -> pd.DataFrame:
    """One Efron Cox model per term, rows with a missing value dropped per model.

    Returns:
        Rows: kind, then :func:`histoprog.survival.cox_univariate`'s columns (a constant
        term or a singular fit has NaN values and a note).
    """
    table = cox_univariate(
        data,
        outcome.time,
        outcome.event,
        terms,
        id_col="patient_id",
        missing="drop",
        with_concordance=False,
    )
    table.insert(0, "kind", kind)
    return table


@dataclass(frozen=True)
class CoxModel:
    """A multivariable Cox model of one cohort: its fit, or the reason there is none.

    Attributes:
        used: the terms fitted.
        constant: terms constant in the complete rows, left out.
        fit: the model, None when it could not be fitted.
        problem: why ``fit`` is None.
    """

    used: tuple[str, ...]
    constant: tuple[str, ...]
    fit: CoxResult | None
    problem: str = ""

    def table(self, constant_note: str) -> pd.DataFrame:
        """Per-term rows (summary plus n, events, note); constant terms get ``constant_note``.

        Without a fit: the constant terms, then the used ones with the problem as note.
        """
        notes = pd.DataFrame({"term": list(self.constant), "note": constant_note})
        if self.fit is None:
            if not self.used:
                return notes
            failed = pd.DataFrame({"term": list(self.used), "note": self.problem})
            return pd.concat([notes, failed], ignore_index=True)
        table = self.fit.summary.assign(n=self.fit.n, events=self.fit.n_events, note="")
        return pd.concat([table, notes], ignore_index=True)


def multivariate_cox(data: pd.DataFrame, outcome: Outcome, terms: Sequence[str]) -> CoxModel:
    """Cox model of ``terms`` on the rows with every term; constant terms are left out."""
    d = data.dropna(subset=list(terms))
    constant = tuple(t for t in terms if d[t].nunique() < 2)
    use = tuple(t for t in terms if t not in constant)
    if not use:
        return CoxModel(use, constant, None, "no term varies in this cohort")
    try:
        fit = cox_or_none(d, outcome, use, id_col="patient_id", with_concordance=False)
    except InputError as err:
        return CoxModel(use, constant, None, err.problem)
    return CoxModel(use, constant, fit, "" if fit is not None else SINGULAR)
