"""Infiltration-threshold files (``gmm_thresholds`` output or a ``model.json``) and NaN in JSON."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from histoprog.errors import InputError
from histoprog.io import read_json


def load_thresholds(path: str | os.PathLike[str]) -> dict[str, float]:
    """Infiltration thresholds from ``infiltration_thresholds.json`` or a ``model.json``.

    JSON null (a class without a fitted threshold) becomes NaN.
    """
    data = read_json(path)
    values = data.get("thresholds", data.get("gmm_thresholds"))
    if not isinstance(values, Mapping):
        raise InputError(
            f"thresholds file '{path}'",
            "has no 'thresholds' (or model.json 'gmm_thresholds') mapping",
            "point it at results/analysis/crlm/infiltration_thresholds.json or a model.json",
        )
    return {c: math.nan if v is None else float(v) for c, v in values.items()}


def json_safe(record: Mapping[str, Any]) -> dict[str, Any]:
    """Replace NaN floats by None (JSON null)."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in record.items()}
