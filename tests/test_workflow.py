"""Real snakemake runs through `tile` and `stain` on generated cohorts (plus bad inputs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import SHARED
from workflow_helpers import (
    ROOT,
    cohort_row,
    mini_cohort,
    snakemake,
    snakemake_env,
    write_blank_slide,
    write_cohort_sheet,
    write_config,
    write_dark_slide,
)

pytestmark = pytest.mark.workflow

BAD = {3: "no_mpp", 4: "corrupt", 5: "missing", 6: "mpp_in_sheet", 7: "appmag_only"}


@pytest.fixture(scope="module")
def bad_cohort_run(tmp_path_factory):
    """A 7-patient cohort with planted bad slides, plus a blank and the shared broken ones."""
    work = tmp_path_factory.mktemp("bad")
    data = mini_cohort(
        work / "data",
        "mix",
        7,
        seed=5,
        formats=["svs", "tiff"],
        magnifications=[20, 40],
        bad_slides=BAD,
    )
    table = pd.read_csv(data / "slides.tsv", sep="\t", dtype=str)
    extra = [
        {"slide_id": "blank", "patient_id": "Pblank", "path": "blank.tiff"},
        {"slide_id": "dark", "patient_id": "Pdark", "path": "dark.tiff"},
        # the file records 0.5 um/px (20x); the sheet's 0.25 contradicts it
        {"slide_id": "mpp_contradicts", "patient_id": "Pmpp", "path": table["path"].iloc[0],
         "mpp": "0.25"},
    ]  # fmt: skip
    write_blank_slide(data / "blank.tiff")
    write_dark_slide(data / "dark.tiff")
    for name in ("unopenable.tiff", "unreadable.svs"):
        if (SHARED / "slides" / name).exists():
            extra.append(
                {
                    "slide_id": Path(name).stem,
                    "patient_id": name,
                    "path": str(SHARED / "slides" / name),
                }
            )
    pd.concat([table, pd.DataFrame(extra)]).to_csv(data / "slides.tsv", sep="\t", index=False)
    write_cohort_sheet(
        work,
        [cohort_row("mix", "discovery", data, pipeline="crlm")],
    )
    write_config(work)
    result = snakemake(work, "--cores", "2", "--keep-going", "results/mix/slide_status.tsv")
    return work, table, result


def test_bad_slides_are_recorded_and_others_finish(bad_cohort_run):
    work, table, _ = bad_cohort_run
    status = pd.read_csv(work / "results/mix/slide_status.tsv", sep="\t", dtype=str).set_index(
        "slide_id"
    )
    ids = list(table["slide_id"])
    expected_failed = {
        ids[2]: r"'mpp' column",
        ids[3]: "OpenSlide cannot open it",
        ids[4]: "does not exist",
        "blank": "no tissue tile found",
        "dark": "dark background as in fluorescence",
        "mpp_contradicts": "the slide table gives mpp 0.25 but the file records 0.5",
    }
    if "unopenable" in status.index:
        expected_failed |= {"unopenable": "cannot open", "unreadable": "cannot decode"}
    for slide_id, message in expected_failed.items():
        assert status.loc[slide_id, "status"] == "failed", slide_id
        assert status.loc[slide_id, "stage"] == "tile"
        assert message in status.loc[slide_id, "reason"], (slide_id, status.loc[slide_id, "reason"])
        assert slide_id in status.loc[slide_id, "reason"]
    ok = [ids[0], ids[1], ids[5], ids[6]]
    assert (status.loc[ok, "status"] == "ok").all()
    for slide_id in ok:
        meta = json.loads((work / f"results/mix/slides/{slide_id}/tiles.json").read_text())
        stain = json.loads((work / f"results/mix/slides/{slide_id}/stain.json").read_text())
        assert stain["status"] == "ok" and len(stain["params"]["stain_matrix"]) == 2
        assert meta["read"]["effective_mpp"] == pytest.approx(0.5, rel=0.01)
        assert (work / f"results/mix/slides/{slide_id}/stain_qc.png").stat().st_size > 1000
    sources = {
        s: json.loads((work / f"results/mix/slides/{s}/tiles.json").read_text())["slide"][
            "mpp_source"
        ]
        for s in ok
    }
    assert sources[ids[5]] == "sheet" and sources[ids[6]] == "objective_power"


def test_end_of_run_names_the_failed_slides(bad_cohort_run):
    work, _, result = bad_cohort_run
    assert result.returncode == 0
    said = result.stderr + result.stdout
    status = pd.read_csv(work / "results/mix/slide_status.tsv", sep="\t")
    n_failed = int((status["status"] == "failed").sum())
    assert f"cohort 'mix': {n_failed} of {len(status)} slides failed" in said, said[-3000:]
    assert "results/mix/slide_status.tsv" in said


def test_failed_slides_fail_the_run_when_the_config_says_so(bad_cohort_run):
    work, _, _ = bad_cohort_run
    write_config(work, slides={"allow_unusual_mpp": False, "fail_run_on_failed_slides": True})
    result = snakemake(
        work, "--cores", "1", "results/mix/slide_status.tsv", "--forcerun", "slide_status",
        check=False,
    )  # fmt: skip
    write_config(work)
    assert result.returncode != 0
    assert "slides.fail_run_on_failed_slides is true" in result.stderr + result.stdout


def test_tile_table_matches_planted_grid(bad_cohort_run):
    import numpy as np

    work, table, _ = bad_cohort_run
    for slide_id in table["slide_id"].iloc[[0, 1]]:
        truth = np.load(work / f"data/truth/grids/{slide_id}.npy")
        tiles = pd.read_csv(work / f"results/mix/slides/{slide_id}/tiles.tsv", sep="\t")
        kept = np.zeros(truth.shape, dtype=bool)
        kept[tiles["row"], tiles["col"]] = True
        tissue = truth > 0  # class 0 is BACK
        assert (kept & ~tissue).sum() == 0
        assert (kept == tissue).mean() > 0.97


def test_failed_slide_logs_name_the_problem(bad_cohort_run):
    work, table, _ = bad_cohort_run
    log = (work / f"logs/tile/mix/{table['slide_id'].iloc[2]}.log").read_text()
    assert "resolution is unknown" in log and "'mpp' column" in log


def test_no_temporary_files_left(bad_cohort_run):
    work, _, _ = bad_cohort_run
    leftovers = [p for p in (work / "results").rglob("*") if ".tmp" in p.name]
    assert leftovers == []


def test_single_cohort_target_runs_only_that_cohort(tmp_path):
    a = mini_cohort(tmp_path / "a", "ca", 2, seed=1)
    b = mini_cohort(tmp_path / "b", "cb", 2, seed=2)
    write_cohort_sheet(
        tmp_path,
        [cohort_row(n, "discovery", d) for n, d in (("ca", a), ("cb", b))],
    )
    write_config(tmp_path)
    dry = snakemake(tmp_path, "-n", "results/cb/slide_status.tsv")
    assert "results/cb/slides" in dry.stdout and "results/ca/" not in dry.stdout
    slide = pd.read_csv(b / "slides.tsv", sep="\t")["slide_id"].iloc[0]
    snakemake(tmp_path, "--cores", "2", f"results/cb/slides/{slide}/tiles.tsv")
    assert (tmp_path / f"results/cb/slides/{slide}/tiles.tsv").exists()
    assert not (tmp_path / f"results/cb/slides/{slide}/stain.json").exists()
    assert not (tmp_path / "results/ca").exists()


def test_killed_run_resumes_without_redoing_finished_slides(tmp_path):
    data = mini_cohort(tmp_path / "data", "k", 4, seed=3)
    write_cohort_sheet(
        tmp_path,
        [cohort_row("k", "discovery", data)],
    )
    write_config(tmp_path)
    command = [
        str(Path(os.sys.executable).parent / "snakemake"),
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(tmp_path / "config.yaml"),
        "--cores",
        "1",
        "results/k/slide_status.tsv",
    ]
    proc = subprocess.Popen(
        command,
        env=snakemake_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    outputs = tmp_path / "results/k/slides"
    deadline = time.time() + 240

    def wait_for(condition) -> None:
        while not condition() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)

    def stained() -> list[Path]:
        return sorted(outputs.glob("*/stain.json"))

    wait_for(stained)  # whichever slide the scheduler finishes first
    assert stained(), "no slide ever finished"
    first = stained()[0]
    # kill once a later job has written its output, so Snakemake has registered the first
    n_done = len(list(outputs.rglob("*.json")))
    wait_for(lambda: len(list(outputs.rglob("*.json"))) > n_done)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p: p.stat().st_mtime_ns for p in first.parent.iterdir()}
    assert not (tmp_path / "results/k/slide_status.tsv").exists()
    # a hard kill leaves Snakemake's lock: --unlock, then rerun (rerun-incomplete is on)
    snakemake(tmp_path, "--unlock")
    snakemake(tmp_path, "--cores", "2", "results/k/slide_status.tsv")
    assert {p: p.stat().st_mtime_ns for p in finished} == finished
    status = pd.read_csv(tmp_path / "results/k/slide_status.tsv", sep="\t")
    assert (status["status"] == "ok").all() and len(status) == 4


def test_lint_and_default_dry_run_lists_every_demo_slide():
    lint = subprocess.run(
        [str(Path(os.sys.executable).parent / "snakemake"), "--lint"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=snakemake_env(),
    )
    assert lint.returncode == 0, lint.stderr
    assert "Congratulations" in lint.stdout + lint.stderr
    dry = subprocess.run(
        [str(Path(os.sys.executable).parent / "snakemake"), "-n", "--quiet", "rules"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=snakemake_env(),
    )
    assert dry.returncode == 0, dry.stderr
    counts = {}
    for line in dry.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    cohorts = pd.read_csv(ROOT / "config/cohorts.tsv", sep="\t")
    slides = {
        pipeline: sum(
            len(pd.read_csv(ROOT / "config" / sheet, sep="\t")) for sheet in group["slides"]
        )
        for pipeline, group in cohorts.groupby("pipeline")
    }
    assert counts.get("tile") == slides["crlm"] + slides["hcc"], counts
    assert counts.get("stain") == counts.get("classify") == slides["crlm"], counts
    assert counts.get("nuclei") == counts.get("mil_score") == slides["hcc"], counts
    assert counts.get("geojson") == slides["crlm"] and counts.get("geojson_hcc") == slides["hcc"]
    assert counts.get("crlm_model_bundle") == counts.get("hcc_model_bundle") == 1, counts
