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


def test_renamed_config_key_stops_the_run_naming_the_new_key(user_cohort):
    write_config(user_cohort, hcc={"mil": {"t": 0.5}})
    result = snakemake(user_cohort, "-n", check=False)
    said = result.stdout + result.stderr
    assert result.returncode != 0
    assert "config key hcc.mil.t: was renamed hcc.mil.threshold" in said, said[-2000:]


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
    assert "missing column(s) 'os_event' (outcome event" in (result.stdout + result.stderr)
    assert "clinical.tsv" in (result.stdout + result.stderr)


def outcome_only() -> dict:
    """config.yaml's crlm section without clinical factors (the tables have only outcomes)."""
    crlm = yaml.safe_load((ROOT / "config/config.yaml").read_text())["crlm"]
    return {**crlm, "clinical_factors": []}


def test_unparsable_clinical_value_stops_the_run_at_start(user_cohort):
    (user_cohort / "clinical.tsv").write_text(
        "patient_id\tos_months\tos_event\nP1\t10\t1\nP2\t62,7\t0\n"
    )
    write_config(user_cohort, crlm=outcome_only())
    result = snakemake(user_cohort, "-n", check=False)
    said = result.stdout + result.stderr
    assert result.returncode != 0
    assert "'os_months'" in said and "P2" in said and "62,7" in said, said[-2000:]


@pytest.mark.parametrize(
    ("mpp", "expected"), [("0,5", "0,5"), ("5.0", "slides.allow_unusual_mpp: true")]
)
def test_bad_sheet_mpp_stops_the_run_at_start(user_cohort, mpp, expected):
    (user_cohort / "slides.tsv").write_text(
        f"slide_id\tpatient_id\tpath\tmpp\nS1\tP1\ts1.svs\t{mpp}\nS2\tP2\ts2.svs\t0.5\n"
    )
    write_config(user_cohort)
    result = snakemake(user_cohort, "-n", check=False)
    said = result.stdout + result.stderr
    assert result.returncode != 0
    assert "slide 'S1'" in said and "'mpp'" in said and expected in said, said[-2000:]


def test_unusual_sheet_mpp_passes_with_the_override(user_cohort):
    (user_cohort / "slides.tsv").write_text(
        "slide_id\tpatient_id\tpath\tmpp\nS1\tP1\ts1.svs\t5.0\nS2\tP2\ts2.svs\t0.5\n"
    )
    write_config(user_cohort, slides={"allow_unusual_mpp": True}, crlm=outcome_only())
    result = snakemake(user_cohort, "-n", "-p", "results/c/slides/S1/tiles.json", check=False)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "--allow-unusual-mpp" in result.stdout


def test_features_only_run_plans_no_patches_or_training(tmp_path):
    rows = ["cohort\tpipeline\trole\tfeatures\tclinical"]
    for name, role in (("d", "discovery"), ("v", "validation")):
        (tmp_path / f"{name}_features.tsv").write_text("patient_id\tsof_a\nP1\t0.2\nP2\t0.7\n")
        (tmp_path / f"{name}_clinical.tsv").write_text(
            "patient_id\tos_months\tos_event\nP1\t10\t1\nP2\t20\t0\n"
        )
        rows.append(f"{name}\tcrlm\t{role}\t{name}_features.tsv\t{name}_clinical.tsv")
    (tmp_path / "cohorts.tsv").write_text("\n".join(rows) + "\n")
    write_config(tmp_path, crlm=outcome_only())
    result = snakemake(tmp_path, "-n", check=False)
    planned = result.stdout
    assert result.returncode == 0, (result.stdout + result.stderr)[-2000:]
    assert "crlm_analysis" in planned
    for rule in ("synth_patches", "train_tissue", "evaluate_tissue", "train_unet", "train_mil"):
        assert rule not in planned, rule
