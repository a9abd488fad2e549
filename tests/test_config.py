"""Config and sheet errors stop Snakemake at start with a message naming the key/column."""

from pathlib import Path

import pandas as pd
import pytest
import yaml
from workflow_helpers import ROOT, snakemake, write_cohort_sheet, write_config


def leaf_keys(tree: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        if isinstance(value, dict) and key not in ("synth_patches", "crs"):
            keys += leaf_keys(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


def test_every_config_key_is_documented():
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    readme = (ROOT / "config/README.md").read_text()
    for key in leaf_keys(config):
        parent, _, last = key.rpartition(".")
        forms = [f"`{key}`", f"`{key}.*`", f"`.{last}`", f"`{parent}.*`", f".{last}`"]
        assert any(form in readme for form in forms), f"config key {key} is not in config/README.md"


@pytest.fixture
def user_cohort(tmp_path: Path) -> Path:
    (tmp_path / "slides.tsv").write_text(
        "slide_id\tpatient_id\tpath\nS1\tP1\ts1.svs\nS2\tP2\ts2.svs\n"
    )
    (tmp_path / "clinical.tsv").write_text(
        "patient_id\tos_months\tos_event\nP1\t10\t1\nP2\t20\t0\n"
    )
    write_cohort_sheet(
        tmp_path,
        [
            {
                "cohort": "c",
                "role": "discovery",
                "slides": str(tmp_path / "slides.tsv"),
                "clinical": str(tmp_path / "clinical.tsv"),
            }
        ],
    )
    return tmp_path


def test_bad_config_value_names_the_key(user_cohort):
    write_config(user_cohort, stain={"fit": "per_slide"})
    result = snakemake(user_cohort, "-n", check=False)
    assert result.returncode != 0
    assert "per_slide" in (result.stdout + result.stderr) and "fit" in (
        result.stdout + result.stderr
    )


def test_duplicate_slide_ids_stop_the_run(user_cohort):
    (user_cohort / "slides.tsv").write_text(
        "slide_id\tpatient_id\tpath\nS1\tP1\ta.svs\nS1\tP2\tb.svs\n"
    )
    write_config(user_cohort)
    result = snakemake(user_cohort, "-n", check=False)
    assert result.returncode != 0
    assert "duplicate slide_id values: S1" in (result.stdout + result.stderr)
    assert "slides.tsv" in (result.stdout + result.stderr)


def test_clinical_table_missing_column_stops_the_run(user_cohort):
    pd.DataFrame({"patient_id": ["P1"], "os_months": [3]}).to_csv(
        user_cohort / "clinical.tsv", sep="\t", index=False
    )
    write_config(user_cohort)
    result = snakemake(user_cohort, "-n", check=False)
    assert result.returncode != 0
    assert "missing required column(s) 'os_event'" in (result.stdout + result.stderr)
    assert "clinical.tsv" in (result.stdout + result.stderr)
