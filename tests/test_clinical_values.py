"""Clinical values checked at start: every value of the columns the run uses, with the fix."""

from pathlib import Path

import pytest
import yaml

from histoprog import sheets
from histoprog.clinical_values import ClinicalColumn, check_values, run_columns
from histoprog.errors import InputError
from histoprog.sheet_values import BadValue, parse_binary, parse_number

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "clinical.schema.yaml"
CONFIG = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())

CRLM_HEADER = (
    "patient_id\tage\tsex\tnode_positive\tdfi_months\tn_metastases\tmax_diameter_cm\tcea\t"
    "preop_chemo\tadjuvant_chemo\tos_months\tos_event"
)
CRLM_ROWS = [
    "P1\t54\tF\t1\t2.2\t2\t2.3\t1.7\t0\t1\t36.13\t0",
    "P2\t47\tM\t0\t14\t1\t3.6\t30.5\t1\t1\t56.3\t1",
    "P3\t61\tF\t1\t0\t3\t6.1\t250\t0\t0\t12.0\t1",
]
HCC_HEADER = (
    "patient_id\tage\tsex\ttumour_size_cm\tn_tumours\tvascular_invasion\tafp\t"
    "differentiation_grade\tbclc_stage\trfs_months\trecurrence"
)
HCC_ROWS = [
    "H1\t47\tF\t5.3\t1\t0\t107.8\t2\tA\t34.01\t0",
    "H2\t54\tM\t8.5\t1\t0\t111.9\t2\tA\t18\t1",
]


def table(tmp_path: Path, header: str, rows: list[str], edit: dict[tuple[int, str], str]) -> Path:
    """A clinical TSV with cells replaced: ``edit[(row, column)] = text``."""
    names = header.split("\t")
    cells = [r.split("\t") for r in rows]
    for (row, column), text in edit.items():
        cells[row][names.index(column)] = text
    path = tmp_path / "clinical.tsv"
    path.write_text("\n".join([header, *("\t".join(c) for c in cells)]) + "\n")
    return path


def crlm(tmp_path: Path, edit: dict[tuple[int, str], str] | None = None, config=CONFIG):
    path = table(tmp_path, CRLM_HEADER, CRLM_ROWS, edit or {})
    return sheets.load_clinical(path, SCHEMA, config, "crlm", "discovery")


def test_good_table_passes_without_missing_values(tmp_path):
    check = crlm(tmp_path)
    assert list(check.table["patient_id"]) == ["P1", "P2", "P3"]
    assert check.missing.empty


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            {(1, "age"): "62,7"},
            r"clinical table '.*clinical.tsv', column 'age' \(clinical factor, "
            r"crlm.clinical_factors\): value '62,7' of patient P2 has a decimal comma\. "
            r"Fix: write it with a decimal point \(62\.7\)",
        ),
        (
            {(0, "preop_chemo"): "yes", (2, "preop_chemo"): "no"},
            r"column 'preop_chemo' \(clinical factor, crlm.clinical_factors; chemotherapy, "
            r"crlm.preop_chemo\): value 'yes' of patient P1 "
            r"is a word, not a 0/1 code \(write 1\) \(also P3 'no'\)\. Fix: code the column as 0/1",
        ),
        (
            {(2, "os_event"): "yes"},
            r"column 'os_event' \(outcome event, clinical.crlm.event\): value 'yes' of patient P3",
        ),
        (
            {(0, "os_months"): "-3"},
            r"column 'os_months' .*value '-3' of patient P1 is a negative time\. Fix: times must "
            r"be >= 0",
        ),
        (
            {(1, "os_months"): "NA"},
            r"column 'os_months' .*no value for patient\(s\) P2; the survival analysis needs an "
            r"outcome for every patient\. Fix: fill in the value, or remove the patient's row",
        ),
        (
            {(1, "cea"): "30 ng/mL"},
            r"column 'cea' \(CRS component, crlm.crs.cea .*value '30 ng/mL' of patient P2 has a "
            r"unit or text after the number\. Fix: write the number only \(30\)",
        ),
        (
            {(0, "node_positive"): "2"},
            r"column 'node_positive' .*value '2' of patient P1 is neither 0 nor 1",
        ),
        (
            {(0, "age"): "unknown"},
            r"column 'age' .*value 'unknown' of patient P1 is not a number\. Fix: write a number; "
            r"leave the cell empty \(or write NA\)",
        ),
        (
            {(0, "sex"): "X"},
            r"column 'sex' .*is text with 3 values \['F', 'M', 'X'\]; only two-level text",
        ),
    ],
)
def test_bad_value_names_file_patient_column_value_and_fix(tmp_path, edit, message):
    with pytest.raises(InputError, match=message):
        crlm(tmp_path, edit)


def test_missing_values_the_analysis_can_live_with_are_listed_per_patient(tmp_path):
    check = crlm(tmp_path, {(0, "cea"): "", (0, "age"): "NA", (2, "adjuvant_chemo"): "NaN"})
    assert list(check.missing["patient_id"]) == ["P1", "P3"]
    reasons = dict(zip(check.missing["patient_id"], check.missing["reason"], strict=True))
    assert reasons["P1"].startswith("no value in age (clinical factor, crlm.clinical_factors); cea")
    assert reasons["P3"] == "no value in adjuvant_chemo (chemotherapy, crlm.adjuvant_chemo)"


def test_crs_columns_needed_by_crs_high_are_required_at_start(tmp_path):
    header = CRLM_HEADER.replace("\tcea", "")
    rows = ["\t".join(c for i, c in enumerate(r.split("\t")) if i != 7) for r in CRLM_ROWS]
    path = table(tmp_path, header, rows, {})
    with pytest.raises(
        InputError,
        match=r"missing column\(s\) 'cea' \(CRS component, crlm.crs.cea \(needed by crs_high in "
        r"crlm.clinical_factors; or give the points in column 'crs'\)\)",
    ):
        sheets.load_clinical(path, SCHEMA, CONFIG, "crlm", "discovery")
    no_crs_high = {**CONFIG, "crlm": {**CONFIG["crlm"], "clinical_factors": ["age"]}}
    assert sheets.load_clinical(path, SCHEMA, no_crs_high, "crlm", "discovery").missing.empty


def test_given_crs_points_replace_the_components(tmp_path):
    header = "patient_id\tcrs\tage\tsex\tpreop_chemo\tos_months\tos_event"
    path = table(tmp_path, header, ["P1\t3\t50\tF\t0\t10\t1", "P2\t6\t60\tM\t1\t20\t0"], {})
    with pytest.raises(InputError, match=r"column 'crs' .*value '6' of patient P2 is not a whole"):
        sheets.load_clinical(path, SCHEMA, CONFIG, "crlm", "discovery")


def test_unanalysed_crlm_role_needs_only_the_outcome(tmp_path):
    path = table(tmp_path, CRLM_HEADER, CRLM_ROWS, {(0, "age"): "62,7"})
    assert sheets.load_clinical(path, SCHEMA, CONFIG, "crlm", "test").missing.empty


def test_hcc_factor_rules_give_the_kinds(tmp_path):
    kinds = {c.name: c.kind for c in run_columns(CONFIG, "hcc", "train", HCC_HEADER.split("\t"))}
    assert kinds == {
        "rfs_months": "time",
        "recurrence": "event",
        "vascular_invasion": "factor",
        "tumour_size_cm": "numeric",
        "n_tumours": "numeric",
        "afp": "numeric",
        "differentiation_grade": "numeric",
    }
    path = table(tmp_path, HCC_HEADER, HCC_ROWS, {(1, "afp"): "400 ng/mL"})
    with pytest.raises(
        InputError, match=r"column 'afp' .*hcc.analysis.clinical_factors.*'400 ng/mL'"
    ):
        sheets.load_clinical(path, SCHEMA, CONFIG, "hcc", "test")
    levels = {**CONFIG, "hcc": {"analysis": {"clinical_factors": {"bclc_stage": ["C", "D"]}}}}
    assert sheets.load_clinical(path, SCHEMA, levels, "hcc", "test").missing.empty


def test_boolean_column_counts_as_0_1():
    import pandas as pd

    data = pd.DataFrame({"patient_id": ["A", "B"], "e": [True, False], "t": [1.0, 2.0]})
    cols = [ClinicalColumn("t", "time", "t"), ClinicalColumn("e", "event", "e")]
    assert check_values(data, cols, "x").missing.empty


@pytest.mark.parametrize(
    ("value", "expected"),
    [(" 12 ", 12.0), ("1e3", 1000.0), (0.5, 0.5), (None, None), (float("nan"), None), (3, 3.0)],
)
def test_parse_number_accepts_plain_numbers(value, expected):
    assert parse_number(value) == expected


@pytest.mark.parametrize("value", ["inf", "  ", "12 months", "0x10", "1.2.3"])
def test_parse_number_rejects(value):
    with pytest.raises(BadValue):
        parse_number(value)


def test_parse_binary():
    assert [parse_binary(v) for v in (0, 1.0, "1", None)] == [0.0, 1.0, 1.0, None]
    with pytest.raises(BadValue, match=r"write 0"):
        parse_binary("No")
