"""The sof, gmm_thresholds, sof_table and crlm_analysis commands on small generated inputs."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from histoprog.classes import CLASSES
from histoprog.commands import crlm_analysis, gmm_thresholds, sof, sof_table
from histoprog.errors import InputError
from histoprog.sof import QC_COLUMNS, compute_sofs, sof_columns


def run(module, argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    module.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    args.func(args)


def random_grid(seed: int, size: int = 30) -> np.ndarray:
    """A grid with a square tumour and random other tissue around it."""
    rng = np.random.default_rng(seed)
    grid = rng.integers(1, len(CLASSES) - 1, size=(size, size))  # DEB..STR
    grid[8:20, 8:20] = CLASSES.index("TUM")
    grid[0, :] = -1
    return grid.astype(np.int8)


def slide_dir(root, cohort: str, slide: str, grid: np.ndarray, status: str = "ok"):
    d = root / cohort / "slides" / slide
    d.mkdir(parents=True)
    np.save(d / "class_grid.npy", grid)
    meta = {"status": status}
    if status == "failed":
        meta.update(failed_stage="tile", reason="unreadable slide")
    (d / "class_counts.json").write_text(json.dumps(meta))
    return d


THRESHOLDS = {"STR": 2.0, "LYM": 1.5, "HEP": 3.0, "MUC": None, "DEB": 2.0}


def test_sof_command_matches_compute_sofs(tmp_path):
    grid = random_grid(0)
    d = slide_dir(tmp_path, "c", "S1", grid)
    thr = tmp_path / "thr.json"
    thr.write_text(json.dumps({"thresholds": THRESHOLDS}))
    run(sof, ["sof", "--grid", str(d / "class_grid.npy"), "--meta", str(d / "class_counts.json"),
              "--thresholds", str(thr), "--slide-id", "S1", "--patient-id", "P1",
              "--out", str(d / "sof.json"), "--out-figure", str(d / "sof.png")])  # fmt: skip
    rec = json.loads((d / "sof.json").read_text())
    ref = compute_sofs(grid, {k: np.nan if v is None else v for k, v in THRESHOLDS.items()})
    assert rec["status"] == "ok" and rec["patient_id"] == "P1"
    for k in sof_columns():
        if np.isnan(ref[k]):
            assert rec[k] is None
        else:
            assert rec[k] == pytest.approx(ref[k])
    assert (d / "sof.png").stat().st_size > 1000


def test_sof_command_passes_failures_and_small_tumours_on(tmp_path):
    thr = tmp_path / "thr.json"
    thr.write_text(json.dumps({"gmm_thresholds": THRESHOLDS}))  # a model.json works too
    small = random_grid(1)
    small[small == CLASSES.index("TUM")] = CLASSES.index("STR")
    small[2:4, 2:4] = CLASSES.index("TUM")
    for slide, grid, status in (("F", random_grid(2), "failed"), ("T", small, "ok")):
        d = slide_dir(tmp_path, "c", slide, grid, status)
        run(sof, ["sof", "--grid", str(d / "class_grid.npy"), "--meta",
                  str(d / "class_counts.json"), "--thresholds", str(thr), "--slide-id", slide,
                  "--patient-id", slide, "--out", str(d / "sof.json"),
                  "--out-figure", str(d / "sof.png")])  # fmt: skip
    failed = json.loads((tmp_path / "c/slides/F/sof.json").read_text())
    assert failed["status"] == "failed" and failed["reason"] == "unreadable slide"
    small_rec = json.loads((tmp_path / "c/slides/T/sof.json").read_text())
    assert small_rec["status"] == "insufficient_tumour"
    assert small_rec["overall_TUM"] > 0 and small_rec["interaction_STR"] is None
    run(sof_table, ["sof_table", "--slides-dir", str(tmp_path / "c/slides"), "--slide-ids",
                    "F", "T", "--out", str(tmp_path / "sof.tsv")])  # fmt: skip
    table = pd.read_csv(tmp_path / "sof.tsv", sep="\t")
    assert list(table.columns) == ["slide_id", "patient_id", *sof_columns(), *QC_COLUMNS]
    assert table["status"].tolist() == ["failed", "insufficient_tumour"]


def test_gmm_thresholds_skip_failed_slides(tmp_path):
    for i in range(4):
        slide_dir(tmp_path, "d", f"S{i}", random_grid(i), "failed" if i == 3 else "ok")
    out = tmp_path / "thr.json"
    run(gmm_thresholds, ["gmm_thresholds", "--slides-dir", str(tmp_path / "d/slides"),
                         "--slide-ids", "S0", "S1", "S2", "S3", "--cohort", "d",
                         "--out", str(out)])  # fmt: skip
    res = json.loads(out.read_text())
    assert res["slides_used"] == ["S0", "S1", "S2"] and res["slides_failed"] == ["S3"]
    assert set(res["thresholds"]) == {"STR", "LYM", "HEP", "MUC", "DEB"}
    assert all(v is None or v >= 0 for v in res["thresholds"].values())
    with pytest.raises(InputError, match="none of its 1 slides has a tumour region"):
        run(gmm_thresholds, ["gmm_thresholds", "--slides-dir", str(tmp_path / "d/slides"),
                             "--slide-ids", "S3", "--cohort", "d", "--out", str(out)])  # fmt: skip


def features_cohort(tmp_path, name: str, seed: int, n: int = 150) -> tuple[str, str]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=n)
    ids = [f"{name}{i}" for i in range(n)]
    t_ev = 50 * rng.exponential(size=n) / np.exp(1.5 * (x > 0.5))
    t_c = rng.uniform(30, 140, n)
    clin = pd.DataFrame({"patient_id": ids, "os_months": np.minimum(t_ev, t_c).round(2),
                         "os_event": (t_ev <= t_c).astype(int), "crs": rng.integers(0, 6, n),
                         "age": rng.integers(40, 80, n), "preop_chemo": rng.integers(0, 2, n),
                         "adjuvant_chemo": rng.integers(0, 2, n)})  # fmt: skip
    feats = pd.DataFrame({"patient_id": ids, "feat_x": x, "feat_y": rng.normal(size=n)})
    f, c = tmp_path / f"{name}_features.tsv", tmp_path / f"{name}_clinical.tsv"
    feats.to_csv(f, sep="\t", index=False)
    clin.to_csv(c, sep="\t", index=False)
    return str(f), str(c)


def test_crlm_analysis_command_features_only(tmp_path):
    fd, cd = features_cohort(tmp_path, "d", 1)
    fv, cv = features_cohort(tmp_path, "v", 2)
    out = tmp_path / "out"
    settings = {"calibration_bootstrap_reps": 10, "clinical_factors": ["crs_high", "age"]}
    run(crlm_analysis, ["crlm_analysis", "--cohort", "d", "discovery", fd, cd, "--cohort", "v",
                        "validation", fv, cv, "--settings", json.dumps(settings),
                        "--out-dir", str(out)])  # fmt: skip
    expected = {f"{t}.tsv" for t in crlm_analysis.TABLES} | {
        "model.json",
        "correlation_heatmap.png",
    }
    expected |= {f"multivariate_{c}.tsv" for c in "dv"} | {"univariate_cox_v.tsv"}
    expected |= {f"{f}_{c}.png" for f in crlm_analysis.COHORT_FIGURES for c in "dv"}
    assert {p.name for p in out.iterdir()} == expected
    model = json.loads((out / "model.json").read_text())
    assert "feat_x_high" in model["selected_features"]
    assert model["gmm_thresholds"] is None
    assert model["settings"]["calibration_bootstrap_reps"] == 10
    mv = pd.read_csv(out / "multivariate_v.tsv", sep="\t")
    assert mv["term"].tolist() == ["sof_high", "crs_high", "age"]
