"""The HCC stages through their commands: nuclei bags, MIL training and scoring, analysis.

Slides come from `histoprog synth` (HCC kind) at 20x, small 16 x 16 grids, read at the HCC
tile plan (512 px at 0.25 mpp) and resized to 64 px instead of 224 so everything runs on a
CPU in seconds.
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from histoprog.errors import InputError
from histoprog.hcc.bags import Bag
from histoprog.models import build_mil_mobilenet, build_unet, save_checkpoint
from histoprog.synth.cohort import generate_cohort
from histoprog.synth.spec import parse_spec

torch.set_num_threads(1)

STAGES = ("tile", "train_unet", "nuclei", "train_mil", "mil_score", "mil_table", "hcc_analysis")
PX = 64  # tile side fed to the models in these tests (224 in the workflow)


def run_stage(*argv: object) -> None:
    """Run one histoprog stage in this process (the CLI's parser, these stages only)."""
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    for name in STAGES:
        importlib.import_module(f"histoprog.commands.{name}").register(sub)
    args = parser.parse_args([str(a) for a in argv])
    args.func(args)


def hcc_cohort(out: Path, name: str, n: int, seed: int) -> Path:
    """A generated HCC cohort: 20x TIFF slides, 16 x 16 grids."""
    spec = {
        "name": name,
        "kind": "hcc",
        "n_patients": n,
        "seed": seed,
        "id_prefix": f"{name}-",
        "grid": {"rows": [16, 16], "cols": [16, 16]},
        "formats": ["tiff"],
        "magnifications": [20],
        "levels": 2,
        "level_factor": 4,
        "texture_variants": 2,
    }
    generate_cohort(parse_spec(spec), out)
    return out


def tile_slide(cohort: Path, slide_id: str, out: Path) -> Path:
    """Run the tile stage at the HCC plan; the slide's output folder."""
    run_stage(
        "tile", "--slide", cohort / "slides" / f"{slide_id}.tiff", "--slide-id", slide_id,
        "--target-mpp", 0.25, "--tile-px", 512, "--out-tiles", out / "tiles.tsv",
        "--out-meta", out / "tiles.json", "--out-mask", out / "tissue_mask.png",
    )  # fmt: skip
    return out


def nuclei_args(cohort: Path, slide_id: str, d: Path, model: Path, bag: int = 16) -> list:
    """Arguments of the nuclei stage for one slide."""
    return [
        "nuclei", "--slide", cohort / "slides" / f"{slide_id}.tiff", "--slide-id", slide_id,
        "--tiles", d / "tiles.tsv", "--tiles-meta", d / "tiles.json", "--model", model,
        "--tile-px", PX, "--bag-size", bag, "--fit-tiles", 8, "--workers", 0,
        "--qc-tiles", 4, "--device", "cpu", "--out-bag", d / "nuclei.npz",
        "--out-meta", d / "nuclei.json", "--out-qc", d / "nuclei_qc.png",
    ]  # fmt: skip


def mil_score_args(cohort: Path, slide_id: str, d: Path, model: Path) -> list:
    """Arguments of the mil_score stage for one slide (outputs beside its bag)."""
    return [
        "mil_score", "--slide", cohort / "slides" / f"{slide_id}.tiff", "--slide-id", slide_id,
        "--patient-id", slide_id, "--tiles-meta", d / "tiles.json", "--bag", d / "nuclei.npz",
        "--nuclei-meta", d / "nuclei.json", "--model", model, "--device", "cpu",
        "--out-score", d / "mil_score.json", "--out-tiles", d / "mil_tiles.tsv",
        "--out-map", d / "mil_map.png",
    ]  # fmt: skip


def save_mil_file(path: Path) -> Path:
    """An untrained MIL MobileNetV2 checkpoint at the published t and p."""
    torch.manual_seed(0)
    save_checkpoint(
        path, build_mil_mobilenet(None), kind="mil", architecture={"in_channels": 4},
        class_names=None, normalisation={"mean": [0.5] * 4, "std": [0.5] * 4},
        config={"t": 0.4457, "p": 3}, metrics={},
    )  # fmt: skip
    return path


def save_unet_file(path: Path, in_channels: int = 3) -> Path:
    """An untrained resnet18 U-net checkpoint (the stages only need a valid model)."""
    torch.manual_seed(0)
    model = build_unet("resnet18", None, in_channels=in_channels)
    save_checkpoint(
        path, model, kind="unet", architecture={"encoder": "resnet18", "in_channels": in_channels},
        class_names=["nucleus"], normalisation={}, config={}, metrics={"val_dice": None},
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three generated HCC slides, tiled, with an untrained U-net checkpoint."""
    root = tmp_path_factory.mktemp("hcc")
    cohort = hcc_cohort(root / "cohort", "tiny", 3, seed=5)
    out = root / "results"
    for sid in ("tiny-001", "tiny-002", "tiny-003"):
        tile_slide(cohort, sid, out / sid)
    return {"root": root, "cohort": cohort, "out": out, "unet": save_unet_file(root / "unet.pt")}


def test_nuclei_bag(tiny: dict[str, Path]) -> None:
    d = tiny["out"] / "tiny-001"
    run_stage(*nuclei_args(tiny["cohort"], "tiny-001", d, tiny["unet"]))
    meta = json.loads((d / "nuclei.json").read_text())
    assert meta["status"] == "ok" and meta["n_bag"] == 16 and meta["stain_method"] == "vahadane"
    assert meta["read"]["tile_px"] == PX and meta["read"]["read_px"] == 256
    assert len(meta["stain"]["stain_matrix"]) == 2
    bag = Bag.load(d / "nuclei.npz")
    assert bag.tiles.shape == (16, PX, PX, 3) and bag.heat.shape == (16, PX, PX)
    assert bag.tiles.dtype == np.uint8 and bag.heat.dtype == np.uint8
    tiles = pd.read_csv(d / "tiles.tsv", sep="\t")
    assert set(zip(bag.row, bag.col, strict=True)) <= set(
        zip(tiles["row"], tiles["col"], strict=True)
    )
    assert (d / "nuclei_qc.png").stat().st_size > 0
    # seeded: the same slide gives the same bag
    d2 = tiny["root"] / "again"
    d2.mkdir()
    for f in ("tiles.tsv", "tiles.json"):
        (d2 / f).write_bytes((d / f).read_bytes())
    run_stage(*nuclei_args(tiny["cohort"], "tiny-001", d2, tiny["unet"]))
    assert np.array_equal(Bag.load(d2 / "nuclei.npz").tiles, bag.tiles)


def test_bag_without_tissue_tiles_fails_the_slide(tiny: dict[str, Path]) -> None:
    d = tiny["root"] / "empty"
    d.mkdir()
    src = tiny["out"] / "tiny-002"
    (d / "tiles.json").write_bytes((src / "tiles.json").read_bytes())
    pd.read_csv(src / "tiles.tsv", sep="\t").head(0).to_csv(d / "tiles.tsv", sep="\t", index=False)
    run_stage(*nuclei_args(tiny["cohort"], "tiny-002", d, tiny["unet"]))
    meta = json.loads((d / "nuclei.json").read_text())
    assert meta["status"] == "failed" and meta["failed_stage"] == "nuclei"
    assert "has no tissue tiles" in meta["reason"]
    with pytest.raises(InputError, match="holds no tiles"):
        Bag.load(d / "nuclei.npz")
    # the score stage passes the failure on (its map says why), the cohort table lists it
    mil = save_mil_file(tiny["root"] / "mil.pt")
    run_stage(*mil_score_args(tiny["cohort"], "tiny-002", d, mil))
    with Image.open(d / "mil_map.png") as figure:
        assert figure.size == (600, 200)  # status.failure_figure at 100 dpi
    run_stage("mil_table", "--scores", d / "mil_score.json", "--out", d / "mil.tsv")
    table = pd.read_csv(d / "mil.tsv", sep="\t")
    assert table.loc[0, "status"] == "failed" and "no tissue tiles" in table.loc[0, "reason"]


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        ("mil", r"holds a MIL MobileNetV2 \('mil'\), but a nuclei U-net"),
        ("unet4", r"taking 4 input channels, but 3 are fed to it"),
    ],
)
def test_heat_map_checkpoint_with_wrong_channels(
    tiny: dict[str, Path], kind: str, match: str
) -> None:
    path = tiny["root"] / f"{kind}.pt"
    if kind == "mil":
        save_checkpoint(
            path, build_mil_mobilenet(None), kind="mil", architecture={"in_channels": 4},
            class_names=None, normalisation={}, config={}, metrics={},
        )  # fmt: skip
    else:
        save_unet_file(path, in_channels=4)
    d = tiny["out"] / "tiny-003"
    with pytest.raises(InputError, match=match):
        run_stage(*nuclei_args(tiny["cohort"], "tiny-003", d, path))


def test_train_mil_without_a_poor_slide(tiny: dict[str, Path], tmp_path: Path) -> None:
    clinical = pd.read_csv(tiny["cohort"] / "clinical.tsv", sep="\t")
    clinical["rfs_months"], clinical["recurrence"] = 60.0, 0  # good, but one late recurrence
    clinical.loc[0, "recurrence"] = 1
    clinical.to_csv(tmp_path / "clinical.tsv", sep="\t", index=False)
    with pytest.raises(InputError, match=r"tiny: has no slide in the poor class"):
        run_stage(
            "train_mil", "--cohort", "tiny", tiny["cohort"] / "slides.tsv", tiny["out"],
            tmp_path / "clinical.tsv", "--out-model", tmp_path / "m.pt", "--out-history",
            tmp_path / "h.tsv", "--out-curve", tmp_path / "c.png", "--out-labels",
            tmp_path / "l.tsv",
        )  # fmt: skip


def test_analysis_tables_and_figures(tmp_path: Path) -> None:
    """The analysis on a generated clinical table with a score that tracks the hazard."""
    rng = np.random.default_rng(0)
    n = 80
    risk = rng.normal(size=n)
    time = rng.exponential(60 * np.exp(-risk))
    censor = rng.uniform(20, 100, n)
    clinical = pd.DataFrame(
        {
            "patient_id": [f"P{i:03d}" for i in range(n)],
            "rfs_months": np.round(np.minimum(time, censor), 2) + 0.01,
            "recurrence": (time <= censor).astype(int),
            "vascular_invasion": (rng.random(n) < 0.3).astype(int),
            "tumour_size_cm": np.round(rng.lognormal(1.4, 0.5, n), 1),
            "bclc_stage": rng.choice(["0", "A", "B", "C"], n),
        }
    )
    clinical.to_csv(tmp_path / "clinical.tsv", sep="\t", index=False)
    score = 1 / (1 + np.exp(-(risk - 0.2)))
    mil = pd.DataFrame(
        {"slide_id": clinical["patient_id"], "patient_id": clinical["patient_id"],
         "score": score, "status": "ok"}
    )  # fmt: skip
    mil.loc[0, "status"] = "failed"
    mil.to_csv(tmp_path / "mil.tsv", sep="\t", index=False)
    for i, slide in enumerate(mil["slide_id"][1:]):  # tiny bags for the gallery
        d = tmp_path / "slides" / slide
        d.mkdir(parents=True)
        tiles = np.full((3, 8, 8, 3), i, np.uint8)
        Bag(tiles, tiles[..., 0], *(np.arange(3),) * 4).save(d / "nuclei.npz")
        logits = pd.DataFrame(
            {"row": range(3), "col": 0, "x": 0, "y": 0, "logit": i + np.arange(3)}
        )
        logits.to_csv(d / "mil_tiles.tsv", sep="\t", index=False)
    factors = {"vascular_invasion": None, "tumour_size_cm": 5, "bclc_stage": ["B", "C"]}
    settings = {
        "clinical_factors": factors,
        "auc_years": [1, 2, 3, 4, 5, 6],
        "gallery_tiles": 4,
    }  # fmt: skip
    out = tmp_path / "hcc"
    run_stage(
        "hcc_analysis", "--cohort", "test", "test", tmp_path / "mil.tsv",
        tmp_path / "clinical.tsv", tmp_path / "slides", "--settings", json.dumps(settings),
        "--out-dir", out,
    )  # fmt: skip
    logrank = pd.read_csv(out / "logrank.tsv", sep="\t")
    main = logrank[logrank["subset"] == "all"].iloc[0]
    assert main["p"] < 0.05 and main["hr"] > 1
    assert {"hr", "hr_lower", "hr_upper", "p_wald"} <= set(logrank.columns)
    assert set(logrank["subset"]) >= {"all", "vascular_invasion = 1", "bclc_stage in [B,C] = 0"}
    uni = pd.read_csv(out / "univariate_cox.tsv", sep="\t")
    assert {"hr", "hr_lower", "hr_upper", "p_wald", "p_lrt"} <= set(uni.columns)
    assert list(uni["term"]) == [
        "mil_score", "mil_high", "vascular_invasion", "tumour_size_cm>5", "bclc_stage in [B,C]"
    ]  # fmt: skip
    multi = pd.read_csv(out / "multivariate_test.tsv", sep="\t")
    assert multi["term"].iloc[0] == "mil_high"
    roc = pd.read_csv(out / "time_roc.tsv", sep="\t")
    assert {"auc", "se"} <= set(roc.columns)
    assert set(roc["marker"]) == {"mil_score", *uni["term"][2:]}
    assert roc.loc[roc["marker"] == "mil_score", "auc"].min() > 0.6
    excl = pd.read_csv(out / "exclusions.tsv", sep="\t")
    assert list(excl["patient_id"]) == ["P000"]
    for fig in ("km", "forest", "time_roc", "km_strata", "gallery"):
        assert (out / f"{fig}_test.png").stat().st_size > 0


def test_unknown_clinical_factor(tmp_path: Path) -> None:
    pd.DataFrame({"patient_id": ["A", "B"], "rfs_months": [5, 50], "recurrence": [1, 0]}).to_csv(
        tmp_path / "c.tsv", sep="\t", index=False
    )
    pd.DataFrame(
        {"slide_id": ["A", "B"], "patient_id": ["A", "B"], "score": [0.9, 0.1], "status": "ok"}
    ).to_csv(tmp_path / "m.tsv", sep="\t", index=False)
    with pytest.raises(InputError, match="clinical factor 'afp'.*hcc.analysis.clinical_factors"):
        run_stage(
            "hcc_analysis", "--cohort", "x", "test", tmp_path / "m.tsv", tmp_path / "c.tsv",
            tmp_path, "--settings", json.dumps({"clinical_factors": {"afp": 400}}),
            "--out-dir", tmp_path / "out",
        )  # fmt: skip
