"""Exact reruns: after a finished run, a changed parameter reruns its jobs and nothing else.

One real run of two 2-slide cohorts through `tile`, `stain` and `slide_status`; each test
edits the config or a slide table, checks ``snakemake -n`` (default rerun triggers) and
leaves the run finished again.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from workflow_helpers import cohort_row, mini_cohort, snakemake, write_cohort_sheet, write_config

pytestmark = pytest.mark.workflow

TARGETS = ("results/ca/slide_status.tsv", "results/cb/slide_status.tsv")
JOB = re.compile(r"^(?:local)?rule (\w+):\n((?: {4}.*\n?)*)", re.M)  # rule, indented lines


def planned_jobs(work: Path, *targets: str) -> set[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run of ``targets`` would run."""
    dry = snakemake(work, "-n", *(targets or TARGETS)).stdout
    jobs = set()
    for rule, body in JOB.findall(dry):
        wildcards = re.search(r"^\s+wildcards: (.*)$", body, re.M)
        jobs.add((rule, wildcards.group(1) if wildcards else ""))
    return jobs


def set_config(work: Path, section: str, key: str, value: object) -> None:
    """Change one key of the run's config.yaml."""
    path = work / "config.yaml"
    config = yaml.safe_load(path.read_text())
    config[section][key] = value
    path.write_text(yaml.safe_dump(config))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Two cohorts run through tile, stain and slide_status; their slide ids."""
    tmp_path = tmp_path_factory.mktemp("rerun")
    slides = {}
    rows = []
    for name, seed in (("ca", 1), ("cb", 2)):
        data = mini_cohort(tmp_path / name, name, 2, seed=seed)
        slides[name] = list(pd.read_csv(data / "slides.tsv", sep="\t")["slide_id"])
        rows.append(cohort_row(name, "discovery", data))
    write_cohort_sheet(tmp_path, rows)
    config = yaml.safe_load(write_config(tmp_path).read_text())
    write_config(tmp_path, tile={**config["tile"], "crlm": {"mpp": 3.5, "px": 32}})
    snakemake(tmp_path, "--cores", "2", *TARGETS)
    return tmp_path, slides


@pytest.fixture()
def finished(run):
    """The finished run: nothing planned before the test, and finished again after it."""
    work, _ = run
    assert planned_jobs(work) == set(), "a finished run plans nothing"
    yield run
    snakemake(work, "--cores", "2", *TARGETS)


def per_slide(rule: str, cohort: str, slides: list[str]) -> set[tuple[str, str]]:
    return {(rule, f"cohort={cohort}, slide={slide}") for slide in slides}


def test_stain_key_reruns_stain_and_status_only(finished):
    work, slides = finished
    set_config(work, "stain", "beta", 0.2)
    expected = {("slide_status", f"cohort={c}") for c in slides}
    for cohort, ids in slides.items():
        expected |= per_slide("stain", cohort, ids)
    assert planned_jobs(work) == expected
    # one cohort's target reruns that cohort's jobs only
    only_cb = {job for job in expected if "cohort=cb" in job[1]}
    assert planned_jobs(work, "results/cb/slide_status.tsv") == only_cb
    snakemake(work, "--cores", "2", "results/cb/slide_status.tsv")
    assert planned_jobs(work) == expected - only_cb


def test_slide_table_change_reruns_that_slide_only(finished):
    work, slides = finished
    table_path = work / "cb" / "slides.tsv"
    table = pd.read_csv(table_path, sep="\t", dtype=str)
    table.loc[0, "mpp"] = "0.5"  # the sheet's mpp of one slide is a tile parameter
    table.to_csv(table_path, sep="\t", index=False)
    first = slides["cb"][:1]
    expected = per_slide("tile", "cb", first) | per_slide("stain", "cb", first)
    assert planned_jobs(work) == expected | {("slide_status", "cohort=cb")}
    slide_target = f"results/cb/slides/{first[0]}/stain.json"
    assert planned_jobs(work, slide_target) == expected
    snakemake(work, "--cores", "2", slide_target)
    assert planned_jobs(work) == {("slide_status", "cohort=cb")}


def test_tile_key_reruns_tile_and_everything_after_it(finished):
    work, slides = finished
    set_config(work, "tile", "lowres_mpp", 4.0)
    expected = {("slide_status", f"cohort={c}") for c in slides}
    for cohort, ids in slides.items():
        expected |= per_slide("tile", cohort, ids) | per_slide("stain", cohort, ids)
    assert planned_jobs(work) == expected
    set_config(work, "tile", "lowres_mpp", 8.0)  # back to the value the outputs were made with
    assert planned_jobs(work) == set()
