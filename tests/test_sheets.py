from pathlib import Path

import pytest

from histoprog import sheets
from histoprog.errors import InputError

SCHEMAS = Path(__file__).resolve().parents[1] / "workflow" / "schemas"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_slide_table_defaults_paths_and_ids(tmp_path):
    table = sheets.load_slides(
        write(
            tmp_path / "s.tsv",
            "slide_id\tpatient_id\tpath\n001\tP1\tslides/a.svs\nS2\tP2\t/abs/b.tiff\n",
        ),
        SCHEMAS / "slides.schema.yaml",
    )
    assert list(table.index) == ["001", "S2"]  # ids stay strings (no 1)
    assert table.loc["001", "path"] == str(tmp_path / "slides" / "a.svs")
    assert table.loc["S2", "path"] == "/abs/b.tiff"
    assert table["mpp"].isna().all()


def test_duplicate_slide_ids(tmp_path):
    path = write(tmp_path / "s.tsv", "slide_id\tpatient_id\tpath\nA\tP1\ta.svs\nA\tP2\tb.svs\n")
    with pytest.raises(InputError, match=r"slide table .*s.tsv.*duplicate slide_id values: A"):
        sheets.load_slides(path, SCHEMAS / "slides.schema.yaml")


def test_slide_table_missing_column(tmp_path):
    path = write(tmp_path / "s.tsv", "slide_id\tpath\nA\ta.svs\n")
    with pytest.raises(InputError, match=r"missing required column\(s\) 'patient_id'"):
        sheets.load_slides(path, SCHEMAS / "slides.schema.yaml")


def test_bad_mpp_value(tmp_path):
    path = write(tmp_path / "s.tsv", "slide_id\tpatient_id\tpath\tmpp\nA\tP\ta.svs\t-0.5\n")
    with pytest.raises(InputError, match=r"slide table .*does not match the schema.*mpp"):
        sheets.load_slides(path, SCHEMAS / "slides.schema.yaml")


def test_cohort_sheet_defaults_and_errors(tmp_path):
    good = write(tmp_path / "c.tsv", "cohort\trole\tslides\tclinical\nA\tdiscovery\ts.tsv\tc.tsv\n")
    table = sheets.load_cohorts(good, SCHEMAS / "cohorts.schema.yaml")
    assert table.loc["A", "pipeline"] == "crlm"  # schema default
    bad_role = write(tmp_path / "r.tsv", "cohort\trole\tslides\tclinical\nA\ttraining\ts\tc\n")
    with pytest.raises(InputError, match=r"cohort sheet .*r.tsv.*role"):
        sheets.load_cohorts(bad_role, SCHEMAS / "cohorts.schema.yaml")
    nothing = write(tmp_path / "n.tsv", "cohort\trole\tclinical\nA\tdiscovery\tc.tsv\n")
    with pytest.raises(InputError, match=r"cohort\(s\) A give neither 'slides' nor 'features'"):
        sheets.load_cohorts(nothing, SCHEMAS / "cohorts.schema.yaml")


def test_clinical_missing_outcome_column(tmp_path):
    path = write(tmp_path / "clin.tsv", "patient_id\tos_months\nP1\t12\n")
    with pytest.raises(
        InputError,
        match=r"clinical table .*clin.tsv.*missing required column\(s\) 'os_event'"
        r".*clinical.<pipeline>",
    ):
        sheets.check_clinical(path, ["os_months", "os_event"], SCHEMAS / "clinical.schema.yaml")


def test_missing_sheet_file(tmp_path):
    with pytest.raises(InputError, match=r"cohort sheet .*nope.tsv.*does not exist"):
        sheets.load_cohorts(tmp_path / "nope.tsv", SCHEMAS / "cohorts.schema.yaml")
