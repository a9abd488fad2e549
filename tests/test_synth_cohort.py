"""Cohort generator and CLI: files, tables, truth, determinism, bad slides, spec errors."""

import argparse
import json
from pathlib import Path

import numpy as np
import openslide
import pandas as pd
import pytest
import yaml

from histoprog.commands import synth as synth_cmd
from histoprog.errors import InputError
from histoprog.sof import compute_sofs, sof_columns
from histoprog.synth.spec import load_spec, parse_spec

SPEC = {
    "name": "tiny",
    "kind": "crlm",
    "n_patients": 5,
    "seed": 3,
    "id_prefix": "T",
    "grid": {"rows": [16, 17], "cols": [16, 18]},
    "formats": ["svs", "tiff"],
    "magnifications": [20, 40],
    "texture_variants": 1,
    "bad_slides": {3: "mpp_in_sheet", 4: "corrupt", 5: "no_mpp"},
}


def run_cli(*argv):
    parser = argparse.ArgumentParser()
    synth_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["synth", *map(str, argv)])
    args.func(args)


def write_spec(path, **over):
    spec = {**SPEC, **over}
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    spec = write_spec(root / "spec.yaml")
    run_cli("cohort", "--spec", spec, "--out", root / "out")
    return root / "out"


def test_cohort_layout_and_tables(cohort):
    slides = pd.read_csv(cohort / "slides.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert list(slides.columns) == ["slide_id", "patient_id", "path", "mpp"]
    assert list(slides.slide_id) == ["T001", "T002", "T003", "T004", "T005"]
    assert list(slides.path) == [
        "slides/T001.svs",
        "slides/T002.tiff",
        "slides/T003.svs",
        "slides/T004.tiff",
        "slides/T005.svs",
    ]
    assert list(slides.mpp) == ["", "", "0.25", "", ""]  # only where the file has none
    for p in slides.path:
        assert (cohort / p).is_file()
    clin = pd.read_csv(cohort / "clinical.tsv", sep="\t")
    for col in [
        "patient_id",
        "node_positive",
        "dfi_months",
        "n_metastases",
        "max_diameter_cm",
        "cea",
        "age",
        "sex",
        "preop_chemo",
        "adjuvant_chemo",
        "os_months",
        "os_event",
    ]:
        assert col in clin.columns
    assert set(clin.os_event) <= {0, 1}
    assert (clin.os_months > 0).all() and (clin.os_months <= 120).all()


def test_slides_open_with_the_right_metadata(cohort):
    truth = pd.read_csv(cohort / "truth" / "slides.tsv", sep="\t", keep_default_na=False)
    by_id = truth.set_index("slide_id")
    s1 = openslide.OpenSlide(cohort / "slides" / "T001.svs")  # svs 20x
    assert s1.properties["openslide.vendor"] == "aperio"
    assert float(s1.properties["openslide.mpp-x"]) == 0.5
    assert s1.dimensions == (by_id.loc["T001", "width"], by_id.loc["T001", "height"])
    grid = np.load(cohort / "truth" / "grids" / "T001.npy")
    assert s1.dimensions == (grid.shape[1] * 224 + 100, grid.shape[0] * 224 + 100)
    s2 = openslide.OpenSlide(cohort / "slides" / "T002.tiff")  # tiff 20x
    assert s2.properties["openslide.vendor"] == "generic-tiff"
    assert float(s2.properties["openslide.mpp-x"]) == 0.5
    s3 = openslide.OpenSlide(cohort / "slides" / "T003.svs")  # 40x, mpp in the sheet only
    assert "openslide.mpp-x" not in s3.properties
    grid3 = np.load(cohort / "truth" / "grids" / "T003.npy")
    assert s3.dimensions == (grid3.shape[1] * 448 + 200, grid3.shape[0] * 448 + 200)
    with pytest.raises(openslide.OpenSlideError):
        openslide.OpenSlide(cohort / "slides" / "T004.tiff")  # corrupt
    s5 = openslide.OpenSlide(cohort / "slides" / "T005.svs")  # no mpp, no objective power
    assert "openslide.mpp-x" not in s5.properties
    assert "openslide.objective-power" not in s5.properties
    assert by_id.loc["T004", "bad"] == "corrupt"


def test_truth_sofs_equal_compute_sofs_on_the_saved_grid(cohort):
    truth = json.loads((cohort / "truth" / "truth.json").read_text())
    sofs = pd.read_csv(cohort / "truth" / "sofs.tsv", sep="\t")
    assert list(sofs.columns[:2]) == ["slide_id", "patient_id"]
    assert list(sofs.columns[2 : 2 + len(sof_columns())]) == sof_columns()
    for _, row in sofs.iterrows():
        grid = np.load(cohort / "truth" / "grids" / f"{row.slide_id}.npy")
        assert grid.dtype == np.int8
        ref = compute_sofs(grid, truth["thresholds"])
        for col in sof_columns():
            assert row[col] == pytest.approx(ref[col], rel=1e-9, abs=1e-12)
        assert row.status == ref["status"] == "ok"
    assert truth["seed"] == 3 and truth["spec"]["n_patients"] == 5
    assert set(truth["model"]["coefficients"]) == {
        "overall_DEB_high",
        "overall_LYM_high",
        "crs_high",
    }
    patients = pd.read_csv(cohort / "truth" / "patients.tsv", sep="\t")
    beta = truth["model"]["coefficients"]
    lp = sum(patients[k] * v for k, v in beta.items())
    np.testing.assert_allclose(lp, patients.linear_predictor, atol=1e-9)


def test_same_seed_gives_identical_tables_and_truth(tmp_path, cohort):
    spec = write_spec(tmp_path / "spec.yaml")
    run_cli("cohort", "--spec", spec, "--out", tmp_path / "again", "--no-slides")
    files = [
        "slides.tsv",
        "clinical.tsv",
        "truth/sofs.tsv",
        "truth/patients.tsv",
        "truth/truth.json",
        "truth/slides.tsv",
    ]
    for f in files:
        assert (tmp_path / "again" / f).read_bytes() == (cohort / f).read_bytes(), f
    for g in (cohort / "truth" / "grids").glob("*.npy"):
        assert (tmp_path / "again" / "truth" / "grids" / g.name).read_bytes() == g.read_bytes()
    # A slide written again is byte-identical (same pixels, same JPEG stream).
    spec1 = write_spec(tmp_path / "one.yaml", n_patients=1, bad_slides={})
    run_cli("cohort", "--spec", spec1, "--out", tmp_path / "one")
    assert (tmp_path / "one" / "slides" / "T001.svs").read_bytes() == (
        cohort / "slides" / "T001.svs"
    ).read_bytes()
    # Another seed gives another cohort.
    other = write_spec(tmp_path / "other.yaml", seed=4)
    run_cli("cohort", "--spec", other, "--out", tmp_path / "other", "--no-slides")
    assert (tmp_path / "other" / "clinical.tsv").read_bytes() != (
        cohort / "clinical.tsv"
    ).read_bytes()


def test_hcc_cohort_tables(tmp_path):
    spec = write_spec(
        tmp_path / "hcc.yaml",
        kind="hcc",
        n_patients=6,
        magnifications=[40],
        grid={"rows": 16, "cols": 16},
        bad_slides={},
    )
    run_cli("cohort", "--spec", spec, "--out", tmp_path / "hcc", "--no-slides")
    clin = pd.read_csv(tmp_path / "hcc" / "clinical.tsv", sep="\t")
    for col in [
        "rfs_months",
        "recurrence",
        "tumour_size_cm",
        "vascular_invasion",
        "afp",
        "differentiation_grade",
        "bclc_stage",
    ]:
        assert col in clin.columns
    pat = pd.read_csv(tmp_path / "hcc" / "truth" / "patients.tsv", sep="\t")
    assert {"risk", "atypia"} <= set(pat.columns)
    assert ((pat.atypia > 0) & (pat.atypia < 1)).all()


@pytest.mark.parametrize(
    "over,key",
    [
        ({"n_patients": 0}, "n_patients"),
        ({"kind": "lung"}, "kind"),
        ({"grid": {"rows": [10, 20], "cols": 20}}, "grid.rows"),
        ({"formats": ["ndpi"]}, "formats"),
        ({"magnifications": [10]}, "magnifications"),
        ({"levels": 4, "level_factor": 4}, "levels"),
        ({"bad_slides": {2: "broken"}}, "bad_slides"),
        ({"bad_slides": {9: "corrupt"}}, "bad_slides"),
        ({"tile_size": 100}, "tile_size"),
        ({"seed": -1}, "seed"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_spec_values_name_the_key(over, key):
    with pytest.raises(InputError, match=f"spec key '{key}'"):
        parse_spec({**SPEC, **over}, "t.yaml")


def test_missing_key_and_bad_file(tmp_path):
    spec = dict(SPEC)
    del spec["seed"]
    with pytest.raises(InputError, match="spec key 'seed'.*missing"):
        parse_spec(spec)
    with pytest.raises(InputError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_spec(bad)


def test_demo_specs_are_valid():
    root = Path(__file__).resolve().parents[1] / "resources" / "demo"
    specs = {p.stem: load_spec(p) for p in sorted(root.glob("*.yaml"))}
    assert {"discovery", "validation", "hcc_train", "hcc_test"} <= set(specs)
    assert specs["discovery"].seed != specs["validation"].seed
    assert specs["hcc_train"].kind == "hcc"
