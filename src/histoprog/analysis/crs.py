"""Fong clinical risk score (CRS) and the combined SOF + CRS grading (METHODS 5.9-5.10).

Fong et al., Ann Surg 1999: one point each for a node-positive primary, a disease-free
interval < 12 months, more than one liver metastasis, a largest metastasis > 5 cm and
preoperative CEA > 200 ng/mL; CRS high = 3-5 points.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from histoprog.defaults import default
from histoprog.errors import InputError

__all__ = ["CRSColumns", "GRADE_LABELS", "crs_points", "combined_grade"]

GRADE_LABELS: tuple[str, ...] = ("Low", "Mid", "High")
"""Labels of the combined grade 0/1/2 (SOF high + CRS high)."""

CRS_HIGH_POINTS = 3
"""CRS high = at least this many points."""


@dataclass(frozen=True)
class CRSColumns:
    """Clinical-table columns of the CRS (config ``crlm.crs``).

    Attributes:
        score: column of given CRS points (0-5); used when the table has it.
        node_positive: 0/1 node-positive primary.
        dfi_months: disease-free interval, months (< 12 scores a point).
        n_metastases: number of liver metastases (> 1 scores a point).
        max_diameter_cm: largest metastasis, cm (> 5 scores a point).
        cea: preoperative CEA, ng/mL (> 200 scores a point).
    """

    score: str | None = default("crlm.crs.score")
    node_positive: str | None = default("crlm.crs.node_positive")
    dfi_months: str | None = default("crlm.crs.dfi_months")
    n_metastases: str | None = default("crlm.crs.n_metastases")
    max_diameter_cm: str | None = default("crlm.crs.max_diameter_cm")
    cea: str | None = default("crlm.crs.cea")

    @classmethod
    def from_mapping(cls, values: Mapping[str, str] | None) -> CRSColumns:
        """Build from a config mapping; unknown keys are an error naming them."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(
                "config key crlm.crs",
                f"unknown key(s) {unknown}",
                f"use only {sorted(known)}",
            )
        return cls(**{k: str(v) for k, v in values.items()})

    def components(self) -> tuple[str, ...]:
        """The five component columns, in Fong's order."""
        return (
            self.node_positive,
            self.dfi_months,
            self.n_metastases,
            self.max_diameter_cm,
            self.cea,
        )


def _numeric(table: pd.DataFrame, column: str, where: str) -> pd.Series:
    """A numeric column, or an error naming the non-numeric values and their patients."""
    values = table[column]
    num = pd.to_numeric(values, errors="coerce")
    bad = num.isna() & values.notna()
    if bad.any():
        ids = table.loc[bad, "patient_id"].astype(str).tolist()[:10]
        raise InputError(
            f"column '{column}' of {where}",
            f"non-numeric CRS values {values[bad].astype(str).unique()[:3].tolist()} "
            f"(patients {', '.join(ids)})",
            "recode it as numbers (0/1 for node status, months, counts, cm, ng/mL)",
        )
    return num.astype(float)


def crs_points(table: pd.DataFrame, columns: CRSColumns, where: str) -> pd.Series | None:
    """Fong CRS points per patient (NaN where a needed value is missing).

    Given points (``columns.score``) win over the components when the table has them.

    Args:
        table: clinical table with ``patient_id``.
        columns: CRS column names.
        where: description of the table for messages.

    Returns:
        Float Series aligned with ``table`` (0-5 or NaN), or None when the table has
        neither the score column nor all five components.

    Raises:
        InputError: non-numeric values, or given points outside 0-5.
    """
    if columns.score in table.columns:
        pts = _numeric(table, columns.score, where)
        bad = pts.notna() & ~pts.isin([0, 1, 2, 3, 4, 5])
        if bad.any():
            ids = table.loc[bad, "patient_id"].astype(str).tolist()[:10]
            raise InputError(
                f"column '{columns.score}' of {where}",
                f"CRS points must be whole numbers 0-5 (patients {', '.join(ids)})",
                "correct the values, or remove the column to compute the CRS from its parts",
            )
        return pts
    if any(c not in table.columns for c in columns.components()):
        return None
    node, dfi, nmet, diam, cea = (_numeric(table, c, where) for c in columns.components())
    parts = pd.concat(
        [(node == 1), (dfi < 12), (nmet > 1), (diam > 5), (cea > 200)], axis=1
    ).astype(float)
    missing = pd.concat([node, dfi, nmet, diam, cea], axis=1).isna().any(axis=1)
    return parts.sum(axis=1).where(~missing, np.nan)


def combined_grade(sof_high: pd.Series, crs_high: pd.Series) -> pd.Series:
    """Combined grade 0/1/2 (Low/Mid/High) = SOF high + CRS high; NaN if either is missing."""
    return (sof_high.astype(float) + crs_high.astype(float)).astype(float)
