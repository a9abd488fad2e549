"""MIL training labels from the clinical table (histoprog.hcc.labels)."""

from __future__ import annotations

import pandas as pd
import pytest

from histoprog.errors import InputError
from histoprog.hcc.labels import check_classes, label_counts, mil_labels

# (rfs_months, recurrence) -> label; good: no recurrence and >= 48 months, poor: recurrence
# before 19.2 months (1.6 years), everything else left out
CASES = [
    (48.0, 0, "good"),  # exactly 48 months without recurrence
    (120.0, 0, "good"),
    (47.99, 0, "left_out"),  # censored before 48 months
    (19.19, 1, "poor"),
    (0.5, 1, "poor"),
    (19.2, 1, "left_out"),  # recurrence at exactly 1.6 years is not "before"
    (60.0, 1, "left_out"),  # late recurrence
    (10.0, 0, "left_out"),  # censored early: outcome unknown
]


def _table(cases: list[tuple[float, int, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": [f"P{i}" for i in range(len(cases))],
            "rfs_months": [c[0] for c in cases],
            "recurrence": [c[1] for c in cases],
        }
    )


def test_hand_cases() -> None:
    labels = mil_labels(_table(CASES), "rfs_months", "recurrence")
    assert list(labels["label"]) == [c[2] for c in CASES]
    y = labels["y"]
    assert list(y[labels["label"] == "good"]) == [1.0, 1.0]
    assert list(y[labels["label"] == "poor"]) == [0.0, 0.0]
    assert y[labels["label"] == "left_out"].isna().all()
    assert label_counts(labels) == {"good": 2, "poor": 2, "left_out": 4}


def test_missing_outcome_is_left_out() -> None:
    table = _table([(50.0, 0, ""), (5.0, 1, "")])
    table.loc[0, "rfs_months"] = None
    labels = mil_labels(table, "rfs_months", "recurrence")
    assert list(labels["label"]) == ["left_out", "poor"]


def test_custom_thresholds() -> None:
    labels = mil_labels(_table(CASES), "rfs_months", "recurrence", 60.0, 12.0)
    assert label_counts(labels) == {"good": 1, "poor": 1, "left_out": 6}


@pytest.mark.parametrize("cases", [[(50.0, 0, "")], [(5.0, 1, "")], [(30.0, 0, "")]])
def test_a_class_without_slides(cases: list[tuple[float, int, str]]) -> None:
    counts = label_counts(mil_labels(_table(cases), "rfs_months", "recurrence"))
    with pytest.raises(InputError, match=r"training cohort\(s\) X: has no slide in the .*class"):
        check_classes(counts, "training cohort(s) X", 48.0, 19.2)


def test_bad_thresholds() -> None:
    with pytest.raises(InputError, match="poor_months"):
        mil_labels(_table(CASES), "rfs_months", "recurrence", good_months=12, poor_months=24)
