"""Stepwise AIC selection of Cox models, as ``MASS::stepAIC(fit, direction = "both")``.

Mirrored steps of ``stepAIC`` (MASS 7.3) for a ``coxph`` fit:

* AIC = ``extractAIC(fit)`` = -2 log partial likelihood + k * (number of coefficients),
  k = 2; the empty model's AIC is -2 x the null log partial likelihood.
* each step tabulates ``<none>`` (the current model), then every droppable term (in model
  order), then every addable term of the upper scope (in scope order); the row with the
  smallest AIC wins, ties going to the earlier row (R's stable ``order``), so the step
  stops when ``<none>`` is (one of) the best, or when the refitted model's AIC is not
  below the current one by more than 1e-7;
* an added term is appended at the end of the model, a dropped one leaves the order of the
  rest unchanged (``update(fit, ~ . +/- term)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from histoprog.errors import InputError
from histoprog.survival._data import check_survival_data
from histoprog.survival.cox import CoxResult, Ties, coxph, fit_cox_arrays

__all__ = ["StepResult", "step_aic"]


@dataclass(frozen=True)
class StepResult:
    """Outcome of stepwise selection: selected terms, final AIC, the path and final fit."""

    selected: tuple[str, ...]
    aic: float
    path: pd.DataFrame
    fit: CoxResult | None

    @property
    def summary(self) -> pd.DataFrame:
        """The final model's coefficient table (empty if no term was selected)."""
        if self.fit is None:
            return pd.DataFrame(columns=["term", "coef", "se", "hr", "p_wald"])
        return self.fit.summary


def step_aic(
    data: pd.DataFrame,
    time: str,
    event: str,
    covariates: Sequence[str],
    *,
    start: Sequence[str] | None = None,
    lower: Sequence[str] = (),
    direction: Literal["both", "backward", "forward"] = "both",
    k: float = 2.0,
    ties: Ties = "efron",
    id_col: str | None = None,
    max_steps: int = 1000,
) -> StepResult:
    """Select Cox model terms by AIC, as ``MASS::stepAIC``.

    Args:
        data: one row per patient.
        time: follow-up time column.
        event: 0/1 event column.
        covariates: the upper scope (the full model).
        start: the starting terms (default: all ``covariates``, i.e. the full model).
        lower: terms that may never be dropped.
        direction: ``"both"`` (default), ``"backward"`` or ``"forward"``.
        k: penalty per coefficient (2 = AIC).
        ties: Cox tie handling.
        id_col: patient id column for error messages.
        max_steps: step limit (``steps`` in R).

    Returns:
        A :class:`StepResult`; ``path`` has columns step, df, deviance, resid_dev, aic like
        the ``anova`` component of R's result.

    Raises:
        InputError: bad input (see :func:`histoprog.survival.cox.coxph`) or a start/lower
            term outside ``covariates``.
    """
    covariates = list(covariates)
    start = list(covariates if start is None else start)
    for name, terms in (("start", start), ("lower", list(lower))):
        bad = [t for t in terms if t not in covariates]
        if bad:
            raise InputError(
                f"{name} terms {bad}", "are not in the covariates (upper scope)", "add them"
            )
    if direction not in ("both", "backward", "forward"):
        raise InputError("direction", f"unknown value {direction!r}", "use both/backward/forward")
    sd = check_survival_data(data, time, event, covariates, id_col=id_col)
    col = {c: i for i, c in enumerate(covariates)}
    cache: dict[frozenset[str], tuple[float, dict[str, float]]] = {}

    def dev(terms: Sequence[str], warm: Sequence[str] | None = None) -> float:
        key = frozenset(terms)
        if key not in cache:
            x = sd.x[:, [col[t] for t in terms]]
            # warm start from the neighbouring model's coefficients (same optimum, fewer steps)
            prev = cache.get(frozenset(warm), (0.0, {}))[1] if warm is not None else {}
            init = np.array([prev.get(t, 0.0) for t in terms])
            beta, ll, _, _ = fit_cox_arrays(sd.time, sd.event, x, ties=ties, init=init)
            cache[key] = (-2 * ll, dict(zip(terms, beta, strict=True)))
        return cache[key][0]

    def aic(terms: Sequence[str], warm: Sequence[str] | None = None) -> float:
        return dev(terms, warm) + k * len(terms)

    current = list(start)
    cur_aic = aic(current)
    rows = [dict(step="", df=np.nan, deviance=np.nan, resid_dev=dev(current), aic=cur_aic)]
    for _ in range(max_steps):
        cands: list[tuple[str, list[str]]] = []
        if direction in ("both", "backward"):
            for t in current:
                if t not in lower:
                    cands.append((f"- {t}", [u for u in current if u != t]))
        if direction in ("both", "forward"):
            for t in covariates:
                if t not in current:
                    cands.append((f"+ {t}", [*current, t]))
        if not cands:
            break
        aics = np.array([cur_aic] + [aic(m, current) for _, m in cands])
        best = int(np.argmin(aics))  # first minimum, like R's stable order()
        if best == 0:
            break
        change, model = cands[best - 1]
        new_aic = aic(model)
        if new_aic >= cur_aic + 1e-7:
            break
        rows.append(
            dict(
                step=change,
                df=1.0 if change.startswith("-") else -1.0,
                deviance=abs(dev(model) - dev(current)),
                resid_dev=dev(model),
                aic=new_aic,
            )
        )
        current, cur_aic = model, new_aic
    fit = coxph(data, time, event, current, ties=ties, id_col=id_col) if current else None
    return StepResult(tuple(current), float(cur_aic), pd.DataFrame(rows), fit)
