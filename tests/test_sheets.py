import logging
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
    assert table.loc["001", "path_as_written"] == "slides/a.svs"
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
    for name in ("s.tsv", "c.tsv"):
        write(tmp_path / name, "")
    good = write(tmp_path / "c.tsv", "cohort\trole\tslides\tclinical\nA\tdiscovery\ts.tsv\tc.tsv\n")
    table = sheets.load_cohorts(good, SCHEMAS / "cohorts.schema.yaml")
    assert table.loc["A", "pipeline"] == "crlm"  # schema default
    bad_role = write(tmp_path / "r.tsv", "cohort\trole\tslides\tclinical\nA\ttraining\ts\tc\n")
    with pytest.raises(InputError, match=r"cohort sheet .*r.tsv.*role"):
        sheets.load_cohorts(bad_role, SCHEMAS / "cohorts.schema.yaml")
    nothing = write(tmp_path / "n.tsv", "cohort\trole\tclinical\nA\tdiscovery\tc.tsv\n")
    with pytest.raises(InputError, match=r"cohort\(s\) A give neither 'slides' nor 'features'"):
        sheets.load_cohorts(nothing, SCHEMAS / "cohorts.schema.yaml")


def test_missing_sheet_file(tmp_path):
    with pytest.raises(InputError, match=r"cohort sheet .*nope.tsv.*does not exist"):
        sheets.load_cohorts(tmp_path / "nope.tsv", SCHEMAS / "cohorts.schema.yaml")


SLIDES_SCHEMA = SCHEMAS / "slides.schema.yaml"
COHORTS_SCHEMA = SCHEMAS / "cohorts.schema.yaml"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0,5", r"value '0,5' has a decimal comma\. Fix: write it with a decimal point \(0\.5\)"),
        ("0.5 um", r"value '0.5 um' has a unit .*Fix: write the number only in um/px \(0\.5\)"),
        ("0.5um/px", r"value .0.5um/px. has a unit .*number only in um/px \(0\.5\)"),
        ("half", r"value 'half' is not a number\. Fix: write a number; leave the cell empty"),
        ("1,250.5", r"value .1,250.5. has a thousands separator"),
    ],
)
def test_bad_mpp_text_stops_naming_slide_column_value_and_fix(tmp_path, value, message):
    path = write(
        tmp_path / "s.tsv",
        f"slide_id\tpatient_id\tpath\tmpp\nA\tP\ta.svs\t0.25\nB\tP\tb.svs\t{value}\n",
    )
    with pytest.raises(
        InputError, match=r"slide table .*s.tsv', slide 'B', column 'mpp': " + message
    ):
        sheets.load_slides(path, SLIDES_SCHEMA)


def test_missing_mpp_spellings_stay_missing(tmp_path):
    path = write(
        tmp_path / "s.tsv",
        "slide_id\tpatient_id\tpath\tmpp\nA\tP\ta.svs\t\nB\tP\tb.svs\tNA\nC\tP\tc.svs\t0.5\n",
    )
    table = sheets.load_slides(path, SLIDES_SCHEMA)
    assert table["mpp"].isna().tolist() == [True, True, False]
    assert table.loc["C", "mpp"] == 0.5


def test_implausible_mpp_stops_unless_allowed(tmp_path):
    path = write(tmp_path / "s.tsv", "slide_id\tpatient_id\tpath\tmpp\nA\tP\ta.svs\t5.0\n")
    with pytest.raises(
        InputError,
        match=r"slide 'A', column 'mpp': 5 um/px is outside the plausible brightfield range "
        r"0.1-2 um/px.*slides.allow_unusual_mpp",
    ):
        sheets.load_slides(path, SLIDES_SCHEMA)
    table = sheets.load_slides(path, SLIDES_SCHEMA, allow_unusual_mpp=True)
    assert table.loc["A", "mpp"] == 5.0


def cohort_folder(tmp_path):
    """A project with config/cohorts.tsv and data/{slides,clinical}.tsv."""
    (tmp_path / "config").mkdir()
    (tmp_path / "data").mkdir()
    write(tmp_path / "data" / "slides.tsv", "slide_id\tpatient_id\tpath\n")
    write(tmp_path / "data" / "clinical.tsv", "patient_id\n")
    return tmp_path / "config" / "cohorts.tsv"


def test_cohort_paths_are_relative_to_the_sheet_folder(tmp_path, monkeypatch):
    sheet = cohort_folder(tmp_path)
    write(
        sheet,
        "cohort\trole\tslides\tclinical\nA\tdiscovery\t../data/slides.tsv\t../data/clinical.tsv\n",
    )
    monkeypatch.chdir(tmp_path)
    table = sheets.load_cohorts("config/cohorts.tsv", COHORTS_SCHEMA)
    assert table.loc["A", "slides"] == "data/slides.tsv"  # relative to the working directory
    monkeypatch.chdir(tmp_path / "data")
    table = sheets.load_cohorts(sheet, COHORTS_SCHEMA)
    assert table.loc["A", "clinical"] == str(tmp_path / "data" / "clinical.tsv")


def test_old_sheet_relative_to_working_directory_still_reads_with_a_warning(
    tmp_path, monkeypatch, caplog
):
    sheet = cohort_folder(tmp_path)
    write(
        sheet, "cohort\trole\tslides\tclinical\nA\tdiscovery\tdata/slides.tsv\tdata/clinical.tsv\n"
    )
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING, logger="histoprog.sheets"):
        table = sheets.load_cohorts("config/cohorts.tsv", COHORTS_SCHEMA)
    assert table.loc["A", "slides"] == "data/slides.tsv"
    assert "relative to the working directory" in caplog.text
    assert "e.g. '../data/slides.tsv'" in caplog.text


def test_sheet_mixing_both_rules_stops(tmp_path, monkeypatch):
    sheet = cohort_folder(tmp_path)
    write(tmp_path / "config" / "clin.tsv", "patient_id\n")
    write(sheet, "cohort\trole\tslides\tclinical\nA\tdiscovery\tdata/slides.tsv\tclin.tsv\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=r"relative to the sheet's folder \(clin.tsv\) and others "
                       r"to the working directory \(data/slides.tsv\)"):  # fmt: skip
        sheets.load_cohorts("config/cohorts.tsv", COHORTS_SCHEMA)


def test_missing_cohort_file_shows_path_as_written_and_resolved(tmp_path, monkeypatch):
    sheet = cohort_folder(tmp_path)
    write(
        sheet,
        "cohort\trole\tslides\tclinical\nA\tdiscovery\t../data/slides.tsv\t../data/clin.tsv\n",
    )
    monkeypatch.chdir(tmp_path)
    resolved = tmp_path / "data" / "clin.tsv"
    with pytest.raises(
        InputError,
        match=rf"cohort 'A', column 'clinical': '../data/clin.tsv' does not exist \(resolved to "
        rf"'{resolved}'\).*relative to the cohort sheet's folder '{tmp_path / 'config'}'",
    ):
        sheets.load_cohorts("config/cohorts.tsv", COHORTS_SCHEMA)


def test_generated_cohort_may_lack_its_clinical_table(tmp_path):
    write(tmp_path / "spec.yaml", "")
    write(tmp_path / "s.tsv", "")
    sheet = write(
        tmp_path / "c.tsv",
        "cohort\trole\tslides\tclinical\tsynth_spec\nA\tdiscovery\ts.tsv\tout/c.tsv\tspec.yaml\n",
    )
    assert sheets.load_cohorts(sheet, COHORTS_SCHEMA).loc["A", "clinical"] == str(
        tmp_path / "out" / "c.tsv"
    )
