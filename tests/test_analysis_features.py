"""Feature/clinical tables, CRS and descriptives (histoprog.analysis.features/crs/descriptives)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from histoprog.analysis.crs import CRSColumns, combined_grade, crs_points
from histoprog.analysis.descriptives import associations, followup, independence, table1
from histoprog.analysis.features import load_cohort, read_clinical, read_features, sof_table
from histoprog.analysis.outcome import Outcome
from histoprog.errors import InputError
from histoprog.sof import QC_COLUMNS, sof_columns
from histoprog.survival import median_followup


def write(path, table: pd.DataFrame) -> str:
    table.to_csv(path, sep="\t", index=False)
    return str(path)


CLIN = pd.DataFrame(
    {
        "patient_id": ["P1", "P2", "P3", "P4"],
        "os_months": [10.0, 20.0, 30.0, 40.0],
        "os_event": [1, 0, 1, 0],
        "age": [50, 60, 70, 80],
    }
)


def test_sof_table_contract_order_and_failed_slides():
    ok = {"slide_id": "S1", "patient_id": "P1", **dict.fromkeys(sof_columns(), 0.1),
          "n_tiles": 10, "n_tissue": 9, "tumour_region_tiles": 70, "status": "ok"}  # fmt: skip
    failed = {"slide_id": "S2", "patient_id": "P2", "status": "failed", "reason": "x"}
    table = sof_table([ok, failed])
    assert list(table.columns) == ["slide_id", "patient_id", *sof_columns(), *QC_COLUMNS]
    assert table["status"].tolist() == ["ok", "failed"]
    assert math.isnan(table.loc[1, "overall_TUM"]) and table.loc[0, "n_tissue"] == 9


def test_read_features_sof_table_status_and_several_slides(tmp_path):
    rows = [
        ("S1", "P1", 0.2, "ok"),
        ("S1b", "P1", 0.4, "ok"),
        ("S2", "P2", 0.5, "insufficient_tumour"),
        ("S3", "P3", np.nan, "failed"),
        ("S3b", "P3", 0.9, "ok"),
    ]
    t = pd.DataFrame(rows, columns=["slide_id", "patient_id", "overall_TUM", "status"])
    feats, names, excl = read_features(write(tmp_path / "sof.tsv", t), "c", ["overall_TUM"])
    assert names == ["overall_TUM"]
    assert feats.set_index("patient_id")["overall_TUM"].to_dict() == pytest.approx(
        {"P1": 0.3, "P3": 0.9}
    )
    assert excl["patient_id"].tolist() == ["P2"]
    assert excl["reason"][0] == "no slide with status ok (S2: insufficient_tumour)"


def test_features_only_cohort_uses_every_other_column(tmp_path):
    feats = {"patient_id": ["P1", "P2", "P5"], "feat_a": [1.0, 2.0, 3.0], "feat_b": [0, 1, 1]}
    f = write(tmp_path / "f.tsv", pd.DataFrame(feats))
    c = write(tmp_path / "c.tsv", CLIN)
    cohort = load_cohort("x", "discovery", f, c, "os_months", "os_event")
    assert cohort.features == ("feat_a", "feat_b")
    assert cohort.data["patient_id"].tolist() == ["P1", "P2"]
    ex = cohort.exclusions.set_index("patient_id")["reason"]
    assert ex["P5"] == "no row in the clinical table"
    assert ex["P3"] == ex["P4"] == "no row in the feature table"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda t: t.drop(columns="os_event"), r"missing required column\(s\) 'os_event'"),
        (lambda t: t.rename(columns={"os_months": "OS"}), r"'os_months'.*columns present"),
        (lambda t: t.assign(os_months=["10", "x", "30", "40"]), "must be numeric.*'x'"),
        (
            lambda t: t.assign(os_months=[10, -1, 30, 40]),
            r"negative survival times \(patients P2\)",
        ),
        (lambda t: t.assign(os_months=[10, np.nan, 30, 40]), r"missing or infinite.*P2"),
        (lambda t: t.assign(os_event=[1, 2, 0, 0]), r"0 \(censored\) or 1.*patients P2"),
        (lambda t: t.assign(patient_id=["P1", "P1", "P3", "P4"]), "duplicated patient_id.*P1"),
    ],
)
def test_bad_clinical_tables(tmp_path, change, match):
    path = write(tmp_path / "c.tsv", change(CLIN.copy()))
    with pytest.raises(InputError, match=match) as err:
        read_clinical(path, "coh", "os_months", "os_event")
    assert "cohort 'coh'" in str(err.value)


def test_bad_feature_tables(tmp_path):
    c = write(tmp_path / "c.tsv", CLIN)
    f = write(tmp_path / "f.tsv", pd.DataFrame({"patient_id": ["P1", "P2"], "a": ["1", "high"]}))
    with pytest.raises(InputError, match=r"column 'a'.*non-numeric.*'high'.*patients P2"):
        load_cohort("x", "discovery", f, c, "os_months", "os_event")
    f = write(tmp_path / "g.tsv", pd.DataFrame({"patient_id": ["P1", "P2"], "age": [1.0, 2.0]}))
    with pytest.raises(InputError, match=r"\['age'\] are also in the clinical table"):
        load_cohort("x", "discovery", f, c, "os_months", "os_event")
    f = write(tmp_path / "h.tsv", pd.DataFrame({"patient_id": ["Q1"], "a": [1.0]}))
    with pytest.raises(InputError, match="no patient_id is in both"):
        load_cohort("x", "discovery", f, c, "os_months", "os_event")
    with pytest.raises(InputError, match=r"missing required column\(s\) 'zz'"):
        read_features(f, "x", ["zz"])


def test_crs_points_by_hand():
    t = pd.DataFrame(
        {
            "patient_id": ["a", "b", "c", "d"],
            "node_positive": [1, 0, 1, 1],
            "dfi_months": [0, 12, 11.9, 3],
            "n_metastases": [2, 1, 1, 3],
            "max_diameter_cm": [5.1, 5.0, 2, 6],
            "cea": [201, 200, 10, np.nan],
        }
    )
    pts = crs_points(t, CRSColumns(), "t")
    assert pts[:3].tolist() == [5, 0, 2] and math.isnan(pts[3])
    given = crs_points(t.assign(crs=[1, 2, 3, 4]), CRSColumns(), "t")
    assert given.tolist() == [1, 2, 3, 4]
    assert crs_points(t.drop(columns="cea"), CRSColumns(), "t") is None
    with pytest.raises(InputError, match=r"column 'crs'.*whole numbers 0-5.*patients b"):
        crs_points(t.assign(crs=[1, 7, 3, 4]), CRSColumns(), "t")
    grade = combined_grade(pd.Series([0, 1, 1, 0]), pd.Series([0.0, 0.0, 1.0, np.nan]))
    assert grade[:3].tolist() == [0, 1, 2] and math.isnan(grade[3])


def scored_table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 40
    t = pd.DataFrame(
        {
            "patient_id": [f"p{i}" for i in range(n)],
            "os_months": rng.uniform(1, 100, n).round(1),
            "os_event": rng.integers(0, 2, n),
            "age": np.arange(40, 80),
            "sex": np.resize(["F", "M"], n),
            "feat": np.linspace(0, 1, n),
            "risk_group": np.resize(["Low", "High"], n),
            "crs": np.resize([0.0, 1, 2, 3, 4], n),
        }
    )
    t["crs_high"] = (t["crs"] >= 3).astype(float)
    return t


def test_table1_followup_and_associations():
    t = scored_table()
    variables = ["age", "sex", "crs", "crs_high", "risk_group"]
    t1 = table1({"c": t}, "os_event", variables, ["crs", "crs_high"])
    t1 = t1.set_index(["variable", "level"])["c"]
    assert t1[("patients", "")] == "40"
    q1, med, q3 = np.quantile(np.arange(40, 80), [0.25, 0.5, 0.75])
    assert t1[("age", "")] == f"{med:.3g} ({q1:.3g}-{q3:.3g})"
    assert t1[("sex", "F")] == "20 (50.0%)"
    assert t1[("crs_high", "1")] == "16 (40.0%)"
    assert t1[("crs", "4")] == "8 (20.0%)"  # categorical although numeric
    fu = followup({"c": t}, Outcome("os_months", "os_event")).iloc[0]
    ref = median_followup(t, "os_months", "os_event")
    assert fu["median_followup"] == ref.median
    assoc = pd.DataFrame(associations(t, ["feat"], ["age", "sex"])).set_index(
        ["feature", "variable"]
    )
    assert assoc.loc[("feat", "age"), "statistic"] == pytest.approx(1.0)
    assert assoc.loc[("feat", "sex"), "test"] == "wilcoxon"
    chi = independence(t, "risk_group", ["crs_high"])[0]
    assert chi["test"] == "chi-squared" and chi["n"] == 40


def test_table1_leaves_a_cohort_without_a_variable_empty():
    t = scored_table()
    t1 = table1({"a": t, "b": t.drop(columns=["crs"])}, "os_event", ["crs"], ["crs"])
    row = t1.set_index(["variable", "level"]).loc[("crs", "0")]
    assert row["a"] == "8 (20.0%)" and row["b"] == ""
