"""The HCC branch through a real snakemake run: U-net, nuclei bags, MIL, RFS analysis.

Generated data (``histoprog synth``, the demo's HCC spec: 20x, 16 x 16 grids, planted
signal ``risk_effect: 2.0``, ``atypia_slope: 2.5``): a training cohort of 24 patients
(seed 20240611; 17 labelled: 9 good, 8 poor) and a test cohort of 20 patients (seed
20240613), plus 8 generated nucleus image/mask pairs (256 px at 1 um/px, seed 21). The
settings are the demo overlay's (config/demo.yaml: 64-px tiles, resnet18 U-net for 3
epochs, 16-tile bags, MobileNetV2 from random init, 20 epochs at lr 3e-4, L2 1e-5, seed
0); the MIL score trained on the training cohort must rank the test cohort's patients by
their planted latent risk (see the test's docstring for why not yet the log-rank split).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from scipy.stats import spearmanr
from workflow_helpers import ROOT, cohort_row, snakemake, write_cohort_sheet, write_config

from histoprog.synth.cohort import generate_cohort
from histoprog.synth.nuclei_pairs import write_nuclei_pairs
from histoprog.synth.spec import parse_spec

pytestmark = pytest.mark.workflow

TRAIN = ("tr", "train", 20240611, 24)
TEST = ("te", "test", 20240613, 20)
#: the least Spearman correlation of the test cohort's MIL scores with the planted risk
MIN_RANK_CORRELATION = 0.3
#: planted signal: the latent risk's log hazard ratio and the slope of tumour atypia on it
SIGNAL = {"risk_effect": 2.0, "atypia_slope": 2.5}
BUNDLE = "results/models/hcc_model"
#: test slides the exported bundle is applied to in a second run
APPLIED_SLIDES = 4


def hcc_cohort(out: Path, name: str, seed: int, n: int) -> Path:
    """The demo's HCC spec with this test's name, seed, size and planted signal."""
    spec = yaml.safe_load((ROOT / "resources/demo/hcc_train.yaml").read_text())
    spec.update(name=name, seed=seed, n_patients=n, id_prefix=f"{name}-", **SIGNAL)
    generate_cohort(parse_spec(spec), out)
    return out


@pytest.fixture(scope="module")
def hcc_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generate the cohorts and nucleus pairs, run the workflow to the HCC analysis."""
    work = tmp_path_factory.mktemp("hcc_wf")
    rows = []
    for name, role, seed, n in (TRAIN, TEST):
        data = hcc_cohort(work / "data" / name, name, seed, n)
        rows.append(cohort_row(name, role, data, pipeline="hcc"))
    write_cohort_sheet(work, rows)
    demo = yaml.safe_load((ROOT / "config/demo.yaml").read_text())["hcc"]
    nuclei = demo.pop("synth_nuclei")
    write_nuclei_pairs(
        work / "nuclei", n_images=nuclei["n_images"], size=nuclei["size"], mpp=nuclei["mpp"],
        seed=nuclei["seed"],
    )  # fmt: skip
    hcc = yaml.safe_load((ROOT / "config/config.yaml").read_text())["hcc"]
    for key, value in demo.items():
        hcc[key] = {**hcc[key], **value} if isinstance(value, dict) else value
    hcc["unet"]["nuclei_dir"] = str(work / "nuclei")
    write_config(work, hcc=hcc)
    snakemake(work, "--cores", "2", "results/analysis/hcc/logrank.tsv", BUNDLE, timeout=1800)
    return work


@pytest.fixture(scope="module")
def apply_run(hcc_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The exported HCC bundle applied, in a fresh folder, to the first test slides alone.

    Their clinical table lacks the outcome columns (a partner site without follow-up), so
    the run scores them and analyses nothing; a slide's score depends only on the slide and
    the models, so it must equal the training run's.
    """
    work = tmp_path_factory.mktemp("hcc_apply")
    data = hcc_run / "data" / TEST[0]
    slides = pd.read_csv(data / "slides.tsv", sep="\t").head(APPLIED_SLIDES)
    slides.to_csv(data / "slides_applied.tsv", sep="\t", index=False)
    clinical = pd.read_csv(data / "clinical.tsv", sep="\t")
    clinical.drop(columns=["rfs_months", "recurrence"]).to_csv(
        data / "clinical_applied.tsv", sep="\t", index=False
    )
    row = {"cohort": "partner", "role": "test", "pipeline": "hcc",
           "slides": str(data / "slides_applied.tsv"),
           "clinical": str(data / "clinical_applied.tsv")}  # fmt: skip
    write_cohort_sheet(work, [row])
    config = yaml.safe_load((hcc_run / "config.yaml").read_text())
    config["hcc"]["model"] = str(hcc_run / BUNDLE)
    config["cohorts"] = str(work / "cohorts.tsv")
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake(work, "--cores", "2", timeout=1800)
    return work


def test_mil_score_ranks_the_test_cohort_by_planted_risk(hcc_run: Path) -> None:
    """The MIL slide score of unseen patients follows their planted latent risk.

    What this asserts is the ranking, not the split at the published threshold t: the
    test cohort's log-rank p between S >= t and S < t is not yet stable (measured on these
    cohorts: p 0.014 on one machine, 0.92 on another with the same code; training seeds
    0-2 put 0, 2, 5 or all 20 test slides above t), while the Spearman correlation of S
    with the planted risk stayed at 0.43-0.75 in the same runs. The split is the open work
    of making the MIL training hold (the README's paragraph on what the demo's settings give).
    """
    mil = pd.read_csv(hcc_run / "results/te/mil.tsv", sep="\t")
    assert (mil["status"] == "ok").all()
    truth = pd.read_csv(hcc_run / "data/te/truth/patients.tsv", sep="\t")
    both = mil.merge(truth, on="patient_id")
    assert len(both) == TEST[3]
    rho = spearmanr(both["score"], both["risk"]).statistic
    assert rho >= MIN_RANK_CORRELATION, f"Spearman rho(score, planted risk) = {rho:.3f}"
    logrank = pd.read_csv(hcc_run / "results/analysis/hcc/logrank.tsv", sep="\t")
    assert {"tr", "te"} <= set(logrank["cohort"])


def test_outputs_of_every_stage(hcc_run: Path) -> None:
    models = hcc_run / "results/models"
    for name in ("unet.pt", "unet_learning_curve.png", "mil.pt", "mil_labels.tsv"):
        assert (models / name).stat().st_size > 0
    unet = pd.read_csv(models / "unet_history.tsv", sep="\t")
    assert unet["val_dice"].max() > 0.7
    labels = pd.read_csv(models / "mil_labels.tsv", sep="\t")
    assert {"good", "poor"} <= set(labels["use"])
    out = hcc_run / "results/analysis/hcc"
    for fig in ("km", "forest", "time_roc", "km_strata", "gallery"):
        assert (out / f"{fig}_te.png").stat().st_size > 0
    slide = next((hcc_run / "results/te/slides").iterdir())
    assert (slide / "nuclei_qc.png").stat().st_size > 0
    for cohort in (TRAIN[0], TEST[0]):  # every slide's MIL map
        slides = sorted((hcc_run / f"results/{cohort}/slides").iterdir())
        assert len(slides) == {TRAIN[0]: TRAIN[3], TEST[0]: TEST[3]}[cohort]
        assert all((s / "mil_map.png").stat().st_size > 0 for s in slides)


def test_bundle_applied_alone_gives_the_same_slide_scores_and_groups(
    hcc_run: Path, apply_run: Path
) -> None:
    """No training cohort, fresh folder, no outcome: the same mil.tsv rows, scores, groups."""
    assert not (apply_run / "results/models/mil.pt").exists()  # nothing trained
    applied = (apply_run / "results/partner/mil.tsv").read_text().splitlines()
    fitted = (hcc_run / "results/te/mil.tsv").read_text().splitlines()
    assert applied == fitted[: APPLIED_SLIDES + 1]  # header and the first slides' rows

    def score_and_group(work: Path, cohort: str) -> dict[str, tuple[str, str]]:
        table = pd.read_csv(work / "results/analysis/hcc/risk_scores.tsv", sep="\t", dtype=str)
        table = table[table["cohort"] == cohort]
        pairs = zip(table["mil_score"], table["mil_group"], strict=True)
        return dict(zip(table["patient_id"], pairs, strict=True))

    mine, theirs = score_and_group(apply_run, "partner"), score_and_group(hcc_run, "te")
    assert len(mine) == APPLIED_SLIDES and mine == {pid: theirs[pid] for pid in mine}
    out = apply_run / "results/analysis/hcc"
    assert not (out / "logrank.tsv").exists() and (out / "gallery_partner.png").is_file()


def test_cohort_without_outcome_is_scored_only(hcc_run: Path, tmp_path: Path) -> None:
    """hcc_analysis --outcome-optional: MIL scores and groups, no survival tables."""
    clinical = pd.read_csv(hcc_run / "data/te/clinical.tsv", sep="\t")
    clinical.drop(columns=["rfs_months", "recurrence"]).to_csv(
        tmp_path / "clinical.tsv", sep="\t", index=False
    )
    cohort = ["te", "test", str(hcc_run / "results/te/mil.tsv"), str(tmp_path / "clinical.tsv")]
    command = [sys.executable, "-m", "histoprog", "hcc_analysis", "--cohort", *cohort,
               str(hcc_run / "results/te/slides"), "--outcome-optional", "--out-dir",
               str(tmp_path / "out")]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "no outcome columns; MIL scores and groups only" in done.stderr
    out = tmp_path / "out"
    assert not (out / "logrank.tsv").exists() and (out / "gallery_te.png").is_file()
    mine = pd.read_csv(out / "risk_scores.tsv", sep="\t")
    fitted = pd.read_csv(hcc_run / "results/analysis/hcc/risk_scores.tsv", sep="\t")
    fitted = fitted[fitted["cohort"] == "te"].reset_index(drop=True)
    assert mine["rfs_months"].isna().all()
    pd.testing.assert_series_equal(mine["mil_score"], fitted["mil_score"])
    assert mine["mil_group"].tolist() == fitted["mil_group"].tolist()
