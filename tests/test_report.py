"""`snakemake --report` after a real run of every CRLM stage on tiny generated data.

One run per module: generated patches train a 1-epoch ResNet18 at 32 px (both stages,
evaluated on a test folder), a 3-slide cohort goes through tile, stain, classify and sof,
and two features-only cohorts go through the CRLM analysis. The report and the per-slide
logs of that run are checked.
"""

from __future__ import annotations

import base64
import html
import json
import re
import time
from pathlib import Path

import pandas as pd
import pytest
from workflow_helpers import (
    ROOT,
    cohort_row,
    features_cohort,
    mini_cohort,
    snakemake,
    tiny_config,
)

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

SAMPLED = 2  # report.slides_per_cohort in this test (the cohort has 3 slides)
PER_SLIDE_REPORT = {  # figure -> (category, caption file)
    "tissue_mask": ("Tile QC", "tissue_mask.rst"),
    "stain_qc": ("Stain QC", "stain_qc.rst"),
    "overlay": ("Tissue classes", "tissue_overlay.rst"),
    "sof": ("Spatial features", "crlm_sof.rst"),
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The tiny run, its report and the seconds each took."""
    work = tmp_path_factory.mktemp("report")
    data = mini_cohort(work / "data", "qc", 3, seed=7)
    rows = [
        cohort_row("qc", "test", data),
        features_cohort(work, "disc", 1),
        features_cohort(work, "vali", 2),
    ]  # fmt: skip
    sheet = pd.DataFrame(rows, columns=["cohort", "role", "slides", "features", "clinical"])
    sheet.assign(pipeline="crlm").to_csv(work / "cohorts.tsv", sep="\t", index=False)
    tiny_config(work, report={"slides_per_cohort": SAMPLED})
    targets = ["all", "results/analysis/crlm/model.json"]
    started = time.monotonic()
    snakemake(work, "--cores", "2", *targets)
    ran = time.monotonic() - started
    snakemake(work, "--report", "results/report.html", *targets)
    return work, ran, time.monotonic() - started - ran


SCRIPT = r'<script id="{name}">\s*var {name} = (.*?);\s*</script>'


def report_data(page: str) -> tuple[dict, dict]:
    """The report's results (path -> record) and categories (name -> subcategory -> paths)."""
    found = {
        name: json.loads(re.search(SCRIPT.format(name=name), page, re.S).group(1))
        for name in ("results", "categories")
    }
    return found["results"], found["categories"]


def plain(text: str) -> str:
    """Caption text without HTML tags, rst literals and line breaks."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).replace("``", "").split())


def render(caption: str, wildcards: dict[str, str]) -> str:
    """A caption file with its ``{{ snakemake.wildcards.X }}`` filled in."""
    return re.sub(r"{{ snakemake\.wildcards\.(\w+) }}", lambda m: wildcards[m[1]], caption)


def expected_figures(work: Path) -> list[tuple[str, str, str, str]]:
    """(category, subcategory, path, caption file) of every figure the report must show."""
    slides = list(pd.read_csv(work / "data/slides.tsv", sep="\t")["slide_id"])
    out = [
        (category, "qc", f"results/qc/report/{figure}/{slide}.png", rst)
        for figure, (category, rst) in PER_SLIDE_REPORT.items()
        for slide in slides[:SAMPLED]
    ]
    models = "results/models"
    out += [
        ("Tissue classifier", stage, f"{models}/tissue_{stage}_learning_curve.png",
         "tissue_learning_curve.rst") for stage in ("crc", "crlm")
    ]  # fmt: skip
    out += [
        ("Tissue classifier", "crlm", f"{models}/evaluation/tissue_crlm/roc.png", "tissue_roc.rst"),
        ("Tissue classifier", "crlm", f"{models}/evaluation/tissue_crlm/confusion.png",
         "tissue_confusion.rst"),
        ("CRLM analysis", "feature selection", "results/analysis/crlm/correlation_heatmap.png",
         "crlm_correlation.rst"),
    ]  # fmt: skip
    analysis = {
        "km": ("Kaplan-Meier", "crlm_km.rst"),
        "km_combined": ("Kaplan-Meier", "crlm_km_combined.rst"),
        "adjuvant": ("adjuvant chemotherapy", "crlm_adjuvant.rst"),
        "forest": ("multivariate Cox", "crlm_forest.rst"),
        "time_roc": ("time-dependent ROC", "crlm_time_roc.rst"),
        "calibration": ("calibration", "crlm_calibration.rst"),
    }
    out += [
        (f"CRLM {kind}", cohort, f"results/analysis/crlm/{name}_{cohort}.png", rst)
        for name, (kind, rst) in analysis.items()
        for cohort in ("disc", "vali")
    ]
    return out


def test_report_shows_every_figure_by_stage_and_cohort(run):
    work, ran, reported = run
    print(f"tiny run {ran:.0f} s, report {reported:.0f} s")
    page = (work / "results/report.html").read_text()
    results, categories = report_data(page)
    description = json.loads(re.search(r"var workflow_desc = (.*?);\s*</script>", page, re.S)[1])
    assert f"first report.slides_per_cohort ({SAMPLED}) slides" in plain(description)
    expected = expected_figures(work)
    shown = {
        (cat, sub, path) for cat, subs in categories.items() for sub, paths in subs.items()
        for path in paths
    }  # fmt: skip
    assert shown == {(cat, sub, path) for cat, sub, path, _ in expected}
    for _, _, path, rst in expected:
        record = results[path]
        header, payload = record["data_uri"].split(",", 1)
        assert header.startswith("data:image/png;") and header.endswith(";base64"), path
        assert base64.b64decode(payload)[:8] == b"\x89PNG\r\n\x1a\n", path
        listed = record["job_properties"]["wildcards"].split(", ")
        wildcards = dict(w.split("=") for w in listed if "=" in w)
        source = render((ROOT / "workflow/report" / rst).read_text(), wildcards)
        assert plain(source)[:120] in plain(record["caption"]), (path, record["caption"])
        assert "System Message" not in record["caption"], (path, record["caption"])


def test_report_samples_the_first_slides_of_each_cohort(run):
    work, _, _ = run
    slides = list(pd.read_csv(work / "data/slides.tsv", sep="\t")["slide_id"])
    for figure in PER_SLIDE_REPORT:
        copies = sorted(p.stem for p in (work / f"results/qc/report/{figure}").glob("*.png"))
        assert copies == slides[:SAMPLED], figure
        for slide in copies:  # byte copies of the slides' own figures
            own = work / f"results/qc/slides/{slide}/{figure}.png"
            assert (
                work / f"results/qc/report/{figure}/{slide}.png"
            ).read_bytes() == own.read_bytes()
    assert (work / f"results/qc/slides/{slides[-1]}/stain_qc.png").is_file()


def test_per_slide_logs_give_slide_counts_timings_and_throughput(run):
    work, _, _ = run
    slides = pd.read_csv(work / "data/slides.tsv", sep="\t")["slide_id"]
    number = r"\d+(\.\d+)?"
    for slide in slides:
        tiles = json.loads((work / f"results/qc/slides/{slide}/tiles.json").read_text())
        n = tiles["n_tiles"]
        expected = {
            "tile": [f"slide {slide}: tiling ",
                     rf"slide {slide}: ok, {n} tissue tiles of {tiles['n_grid_tiles']} grid "
                     rf"tiles in {number} s \({number} grid tiles/s\)"],
            "stain": [f"slide {slide}: Macenko slide fit",
                      rf"slide {slide}: stain ok, {min(n, 200)} of {n} tissue tiles read in "
                      rf"{number} s \({number} tiles/s\)"],
            "classify": [f"slide {slide}: classifying {n} tiles on cpu",
                         rf"tiles: {n} in {number} s, {number} tiles/s",
                         rf"slide {slide}: {n} tiles classified \(0 unreadable\) in {number} s, "
                         rf"{number} tiles/s"],
            "sof": [rf"slide {slide}: sof \w+, \d+ tissue tiles, tumour region \d+ tiles in "
                    rf"{number} s \({number} tiles/s\)"],
        }  # fmt: skip
        for rule, patterns in expected.items():
            log = (work / f"logs/{rule}/qc/{slide}.log").read_text()
            for pattern in patterns:
                assert re.search(pattern, log), (rule, pattern, log)
    for log in (work / "logs").rglob("*.log"):
        assert "\r" not in log.read_text(), f"carriage returns (a progress bar) in {log}"
