"""Model bundles: written, checked and applied by a second run that fits nothing.

The unit tests write bundles from small files and break them one way each. The workflow
test runs the tiny CRLM set-up of tests/test_report.py (a 3-slide cohort classified with a
1-epoch ResNet18, two features-only cohorts analysed), then applies the exported bundle in
a fresh folder to the validation cohort and the slide cohort only.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from workflow_helpers import cohort_row, features_cohort, mini_cohort, snakemake, tiny_config

from histoprog.bundle import (
    FORMAT_VERSION,
    check_locked,
    flatten,
    locked_settings,
    read_bundle,
    write_bundle,
)
from histoprog.errors import InputError

# ----------------------------------------------------------------------------- unit tests


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A CRLM bundle of two small files, locked at tile.crlm.px 224."""
    (tmp_path / "a.json").write_text('{"x": 1}')
    (tmp_path / "b.tsv").write_text("c\n1\n")
    files = {"thresholds.json": tmp_path / "a.json", "table.tsv": tmp_path / "b.tsv"}
    return write_bundle(tmp_path / "crlm_model", "crlm", files, {"tile.crlm.px": 224}, {"k": 2})


def test_bundle_reads_back_with_its_record(bundle: Path) -> None:
    b = read_bundle(bundle, "crlm")
    assert b.record["k"] == 2 and b.record["format_version"] == FORMAT_VERSION
    assert b.locked == {"tile.crlm.px": 224}
    assert b.path("table.tsv").read_text() == "c\n1\n"
    assert b.stain_target() is None
    manifest = json.loads((bundle / "MANIFEST.json").read_text())["files"]
    assert sorted(manifest) == ["bundle.json", "table.tsv", "thresholds.json"]


def test_changed_file_is_refused_by_name(bundle: Path) -> None:
    (bundle / "table.tsv").write_text("c\n2\n")
    with pytest.raises(InputError, match=r"table\.tsv.*changed after export"):
        read_bundle(bundle, "crlm")


def test_missing_file_is_refused_by_name(bundle: Path) -> None:
    (bundle / "thresholds.json").unlink()
    with pytest.raises(InputError, match=r"thresholds\.json.*missing"):
        read_bundle(bundle, "crlm")


def test_missing_folder_and_manifest_are_refused(bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"crlm\.model.*does not exist"):
        read_bundle(tmp_path / "nowhere", "crlm")
    (bundle / "MANIFEST.json").unlink()
    with pytest.raises(InputError, match="MANIFEST.json is missing"):
        read_bundle(bundle, "crlm")


def test_other_pipeline_and_newer_format_are_refused(bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"hcc\.model.*a crlm model bundle, not a hcc one"):
        read_bundle(bundle, "hcc")
    record = json.loads((bundle / "bundle.json").read_text())
    record["format_version"] = FORMAT_VERSION + 1
    (bundle / "bundle.json").write_text(json.dumps(record))
    manifest = json.loads((bundle / "MANIFEST.json").read_text())  # signed again: only
    manifest["files"]["bundle.json"] = hashlib.sha256(  # the version is wrong
        (bundle / "bundle.json").read_bytes()
    ).hexdigest()
    (bundle / "MANIFEST.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match=f"format version {FORMAT_VERSION + 1} is newer"):
        read_bundle(bundle, "crlm")


def test_locked_settings_name_the_key_and_both_values(bundle: Path) -> None:
    b = read_bundle(bundle, "crlm")
    check_locked(b, {"tile.crlm.px": 224, "tile.crlm.mpp": 0.25})
    with pytest.raises(InputError, match=r"tile\.crlm\.px.*is 512.*fitted at 224"):
        check_locked(b, flatten({"tile": {"crlm": {"px": 512}}}))


def test_locked_settings_are_the_scale_region_and_stain_keys() -> None:
    config = yaml.safe_load((Path(__file__).parents[1] / "config/config.yaml").read_text())
    crlm = locked_settings(config, "crlm")
    assert crlm["tile.crlm.mpp"] == 0.5 and crlm["tile.crlm.px"] == 224
    assert {"crlm.region.dilation", "stain.alpha", "tile.blank.value_min"} <= set(crlm)
    assert not any(k.startswith(("tile.hcc", "hcc.", "crlm.horizon")) for k in crlm)
    hcc = locked_settings(config, "hcc")
    assert hcc["hcc.mil.threshold"] == 0.4457 and hcc["tile.hcc.px"] == 512
    assert not any(k.startswith(("tile.crlm", "crlm.")) for k in hcc)


# ----------------------------------------------------------------------- workflow runs


def sheet(work: Path, rows: list[dict[str, str]]) -> None:
    """A CRLM cohort sheet with the given rows."""
    table = pd.DataFrame(rows, columns=["cohort", "role", "slides", "features", "clinical"])
    table.assign(pipeline="crlm").to_csv(work / "cohorts.tsv", sep="\t", index=False)


def without_outcome(work: Path, row: dict[str, str], name: str) -> dict[str, str]:
    """A copy of a features-only cohort whose clinical table lacks the outcome columns."""
    clinical = pd.read_csv(row["clinical"], sep="\t").drop(columns=["os_months", "os_event"])
    clinical.to_csv(work / f"{name}_clinical.tsv", sep="\t", index=False)
    return {**row, "cohort": name, "clinical": str(work / f"{name}_clinical.tsv")}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the fitting run, the apply-only run in a fresh folder)."""
    fit = tmp_path_factory.mktemp("bundle_fit")
    data = mini_cohort(fit / "data", "qc", 3, seed=7)
    slides = cohort_row("qc", "test", data)
    disc, vali = features_cohort(fit, "disc", 1), features_cohort(fit, "vali", 2)
    sheet(fit, [slides, disc, vali])
    tiny_config(fit)
    snakemake(fit, "--cores", "2")
    apply = tmp_path_factory.mktemp("bundle_apply")
    sheet(apply, [slides, vali, without_outcome(fit, vali, "nofu")])
    tiny_config(apply)
    config = yaml.safe_load((apply / "config.yaml").read_text())
    config["crlm"]["model"] = str(fit / "results/models/crlm_model")
    config["crlm"]["infiltration_thresholds"] = None
    (apply / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(apply, "--cores", "2")
    assert "applying the model bundle" in result.stdout + result.stderr
    return fit, apply


@pytest.mark.workflow
@pytest.mark.slow
def test_fitting_run_exports_a_complete_bundle(runs: tuple[Path, Path]) -> None:
    fit, _ = runs
    b = read_bundle(fit / "results/models/crlm_model", "crlm")
    assert {"tissue_classifier.pt", "infiltration_thresholds.json", "cutpoints.tsv"} <= {
        p.name for p in b.folder.iterdir()
    }
    model = json.loads((fit / "results/analysis/crlm/model.json").read_text())
    assert b.record["model"]["score_cutoff"] == model["score_cutoff"]
    assert b.record["training_cohorts"] == ["disc"]
    assert b.locked["tile.crlm.px"] == 32 and b.locked["crlm.region.dilation"] == 5
    assert {"histoprog", "torch"} <= set(b.record["versions"])


@pytest.mark.workflow
@pytest.mark.slow
def test_apply_run_reproduces_scores_and_groups_byte_for_byte(runs: tuple[Path, Path]) -> None:
    fit, apply = runs

    def rows(work: Path) -> list[str]:
        lines = (work / "results/analysis/crlm/risk_scores.tsv").read_text().splitlines()
        return [line for line in lines[1:] if line.startswith("vali\t")]

    assert rows(apply) == rows(fit) and len(rows(fit)) > 100
    out = apply / "results/analysis/crlm"
    assert not (out / "model.json").exists() and not (out / "cutpoints.tsv").exists()
    assert (out / "km_vali.png").is_file() and (out / "logrank.tsv").is_file()
    assert not (apply / "results/models/tissue_crlm.pt").exists()  # nothing trained


@pytest.mark.workflow
@pytest.mark.slow
def test_apply_run_classifies_slides_with_the_bundle(runs: tuple[Path, Path]) -> None:
    fit, apply = runs
    for slide in sorted((fit / "results/qc/slides").iterdir()):
        other = apply / "results/qc/slides" / slide.name
        grid = np.load(slide / "class_grid.npy")
        np.testing.assert_array_equal(np.load(other / "class_grid.npy"), grid)
        assert (other / "classes.tsv").read_bytes() == (slide / "classes.tsv").read_bytes()
        assert json.loads((other / "annotations.geojson").read_text())["features"]
    assert (apply / "results/qc/sof.tsv").read_bytes() == (fit / "results/qc/sof.tsv").read_bytes()


@pytest.mark.workflow
@pytest.mark.slow
def test_mismatched_scale_and_other_pipeline_bundle_are_refused(
    runs: tuple[Path, Path],
) -> None:
    _, apply = runs
    config = yaml.safe_load((apply / "config.yaml").read_text())
    bundle = config["crlm"]["model"]
    config["tile"]["crlm"]["px"] = 64
    (apply / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(apply, "-n", check=False)
    said = result.stdout + result.stderr
    assert result.returncode != 0
    assert "config key tile.crlm.px: is 64 but the model bundle" in said
    assert "fitted at 32" in said
    config["tile"]["crlm"]["px"] = 32
    config["hcc"]["model"] = bundle
    (apply / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(apply, "-n", check=False)
    assert result.returncode != 0
    assert "this is a crlm model bundle, not a hcc one" in result.stdout + result.stderr


@pytest.mark.workflow
@pytest.mark.slow
def test_cohort_without_outcome_gets_scores_and_groups_only(runs: tuple[Path, Path]) -> None:
    _, apply = runs
    out = apply / "results/analysis/crlm"
    risk = pd.read_csv(out / "risk_scores.tsv", sep="\t")
    nofu, vali = (risk[risk["cohort"] == c].reset_index(drop=True) for c in ("nofu", "vali"))
    assert len(nofu) == len(vali) > 100 and nofu["os_months"].isna().all()
    pd.testing.assert_series_equal(nofu["score"], vali["score"])
    assert (nofu["risk_group"] == vali["risk_group"]).all()
    assert not (out / "km_nofu.png").exists() and (out / "km_vali.png").exists()
    assert "nofu" not in set(pd.read_csv(out / "logrank.tsv", sep="\t")["cohort"])
    log = (apply / "logs/crlm_analysis/crlm.log").read_text()
    assert "cohort nofu has no outcome columns" in log


@pytest.mark.workflow
def test_only_cohorts_without_outcome_are_scored(runs: tuple[Path, Path], tmp_path: Path) -> None:
    fit, apply = runs
    vali = features_cohort(tmp_path, "vali", 2)
    sheet(tmp_path, [without_outcome(tmp_path, vali, "nofu")])
    tiny_config(tmp_path)
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    config["crlm"]["model"] = str(fit / "results/models/crlm_model")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    said = snakemake(tmp_path, "--cores", "1")
    assert "has no outcome columns" in said.stdout + said.stderr
    out = tmp_path / "results/analysis/crlm"
    assert sorted(p.name for p in out.iterdir()) == ["exclusions.tsv", "risk_scores.tsv"]
    mine = pd.read_csv(out / "risk_scores.tsv", sep="\t")
    theirs = pd.read_csv(fit / "results/analysis/crlm/risk_scores.tsv", sep="\t")
    theirs = theirs[theirs["cohort"] == "vali"].reset_index(drop=True)
    assert mine["risk_group"].tolist() == theirs["risk_group"].tolist()


@pytest.mark.workflow
def test_cohort_lacking_a_model_feature_is_refused(runs: tuple[Path, Path], tmp_path: Path) -> None:
    fit, _ = runs
    model = json.loads((fit / "results/analysis/crlm/model.json").read_text())
    needed = model["selected_features"][0].removesuffix("_high")
    row = features_cohort(tmp_path, "vali", 2)
    feats = pd.read_csv(row["features"], sep="\t").drop(columns=[needed])
    feats.to_csv(row["features"], sep="\t", index=False)
    bundle = str(fit / "results/models/crlm_model")
    command = [sys.executable, "-m", "histoprog", "crlm_analysis", "--cohort", "vali",
               "validation", row["features"], row["clinical"], "--bundle", bundle,
               "--out-dir", str(tmp_path / "out")]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 2
    assert f"lacks the model feature(s) ['{needed}']" in done.stderr
