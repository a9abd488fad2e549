"""``histoprog classify`` on the real CMU-1 region (tile + stain first), with bad inputs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import openslide
import pandas as pd
import pytest
import torch
from conftest import shared_file
from PIL import Image, ImageColor

from histoprog import data
from histoprog.classes import CLASSES
from histoprog.cli import main
from histoprog.models import build_tissue_classifier, save_checkpoint
from histoprog.plots.colours import class_colour
from histoprog.plots.overlay import LEGEND_PX, class_overlay
from histoprog.plots.pil_text import header_px
from histoprog.plots.slide_view import FOOTER_PX
from histoprog.stain import TORCHSTAIN_BACKGROUND_INTENSITY, MacenkoNormalizer
from histoprog.train import normalisation_record

torch.set_num_threads(1)

CRC = ("ADI", "BACK", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM")


def _model(path: Path, classes: tuple[str, ...] = CLASSES, target: bool = True) -> Path:
    torch.manual_seed(0)
    model = build_tissue_classifier(len(classes), backbone="resnet18", weights=None)
    normalizer = MacenkoNormalizer(None, TORCHSTAIN_BACKGROUND_INTENSITY) if target else None
    save_checkpoint(
        path,
        model,
        kind="tissue_classifier",
        architecture={"backbone": "resnet18", "num_classes": len(classes)},
        class_names=list(classes),
        normalisation=normalisation_record("tile" if target else "none", normalizer, None),
        config={},
        metrics={},
    )
    return path


@pytest.fixture(scope="module")
def slide_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tile table, stain parameters and a small (untrained) CRLM model for CMU-1."""
    slide = shared_file("slides", "cmu-1-small-region_3level.svs")
    out = tmp_path_factory.mktemp("cmu1")
    common = ["--slide", str(slide), "--slide-id", "cmu1"]
    tiles = ["--tiles", str(out / "tiles.tsv"), "--tiles-meta", str(out / "tiles.json")]
    assert (
        main(
            [
                "tile",
                *common,
                "--out-tiles",
                str(out / "tiles.tsv"),
                "--out-meta",
                str(out / "tiles.json"),
                "--out-mask",
                str(out / "mask.png"),
            ]
        )  # fmt: skip
        == 0
    )
    assert (
        main(
            [
                "stain",
                *common,
                *tiles,
                "--out-params",
                str(out / "stain.json"),
                "--out-qc",
                str(out / "stain_qc.png"),
            ]
        )  # fmt: skip
        == 0
    )
    _model(out / "model.pt")
    (out / "slide").write_text(str(slide))
    return out


def classify(d: Path, out: Path, *extra: str, model: Path | None = None, stain: Path | None = None):
    return main(
        [
            "classify", "--slide", (d / "slide").read_text(), "--slide-id", "cmu1",
            "--tiles", str(d / "tiles.tsv"), "--tiles-meta", str(d / "tiles.json"),
            "--stain", str(stain or d / "stain.json"), "--model", str(model or d / "model.pt"),
            "--threads", "1", "--batch-size", "16",
            "--out-classes", str(out / "classes.tsv"), "--out-grid", str(out / "class_grid.npy"),
            "--out-counts", str(out / "class_counts.json"),
            "--out-overlay", str(out / "overlay.png"), *extra,
        ]
    )  # fmt: skip


def test_outputs_grid_and_overlay(slide_dir: Path, tmp_path: Path) -> None:
    assert classify(slide_dir, tmp_path, "--workers", "1", "--thumbnail-px", "700") == 0
    tiles = pd.read_csv(slide_dir / "tiles.tsv", sep="\t")
    meta = json.loads((slide_dir / "tiles.json").read_text())
    table = pd.read_csv(tmp_path / "classes.tsv", sep="\t")
    probs = [f"prob_{c}" for c in CLASSES]
    assert list(table.columns) == ["row", "col", "x", "y", *probs, "class", "read_ok"]
    assert len(table) == len(tiles) == 48
    assert table[["row", "col", "x", "y"]].equals(tiles[["row", "col", "x", "y"]])
    assert np.allclose(table[probs].sum(axis=1), 1, atol=1e-5)
    assert (table["class"] == table[probs].idxmax(axis=1).str[5:]).all()
    assert table["read_ok"].eq(1).all()

    grid = np.load(tmp_path / "class_grid.npy")
    assert grid.shape == (meta["grid"]["rows"], meta["grid"]["cols"]) == (13, 9)
    assert grid.dtype == np.int8
    codes = table["class"].map(CLASSES.index).to_numpy()
    assert np.array_equal(grid[table["row"], table["col"]], codes)
    assert (grid >= 0).sum() == 48 and set(np.unique(grid)) <= {-1, *range(7)}

    counts = json.loads((tmp_path / "class_counts.json").read_text())
    assert counts["status"] == "ok"
    assert counts["counts"] == {c: int((table["class"] == c).sum()) for c in CLASSES}
    assert counts["n_tiles"] == counts["n_classified"] == 48
    assert counts["n_failed_tiles"] == 0 and counts["grid_shape"] == [13, 9]
    assert counts["model"]["backbone"] == "resnet18"
    params = counts["provenance"]["params"]
    assert params["model_sha256"] == counts["model"]["sha256"]
    assert "torch" in counts["provenance"]["versions"]
    with Image.open(tmp_path / "overlay.png") as overlay:
        assert overlay.mode == "RGB"
        width, height = overlay.size
    # the slide image (left of the legend, below the one-line title, above the scale bar)
    # has a long side of --thumbnail-px, although the 3-level slide has no level at that
    # resolution
    assert max(width - LEGEND_PX, height - header_px(1) - FOOTER_PX) == 700


def test_overlay_tiles_carry_their_class_colour() -> None:
    """Each tile's thumbnail pixels are blended with its class colour; no-tile cells are not."""
    thumb = np.full((40, 60, 3), 200, dtype=np.uint8)  # level 0: x 1000..1600, y 500..900
    grid = np.array([[0, -1, 6], [3, 2, -1]], dtype=np.int8)  # 200 px tiles from (1100, 500)
    counts = {c: int((grid == i).sum()) for i, c in enumerate(CLASSES)}
    zoom = 9  # the 60 px thumbnail is enlarged to a long side of 540 px
    image = class_overlay(
        thumb, (1000, 500), 10.0, grid, (1100, 500), 200, CLASSES, counts, "slide s: 5 tiles", 540
    )
    assert isinstance(image, Image.Image) and image.mode == "RGB"
    pixels = np.asarray(image).astype(int)
    top = header_px(1)

    def at(x: float, y: float) -> np.ndarray:  # the overlay pixel at a level-0 point
        return pixels[top + int((y - 500) / 10 * zoom), int((x - 1000) / 10 * zoom)]

    for (row, col), code in np.ndenumerate(grid):
        x, y = 1100 + 200 * col + 60, 500 + 200 * row + 100  # in the tile (and thumbnail)
        if code < 0:
            assert (at(x, y) == 200).all()
            continue
        colour = np.array(ImageColor.getrgb(class_colour(CLASSES[code], int(code))))
        assert np.abs(at(x, y) - (0.55 * 200 + 0.45 * colour)).max() <= 1, CLASSES[code]
    assert (at(1050, 600) == 200).all()  # left of the grid: the thumbnail as it is
    assert image.size == (60 * zoom + LEGEND_PX, top + 40 * zoom)


def test_classify_imports_neither_matplotlib_nor_sklearn() -> None:
    """The per-slide stage runs for every slide: its import time matters."""
    code = (
        "import sys, histoprog.commands.classify; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'matplotlib', 'sklearn'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_rerun_is_skipped_unless_forced(slide_dir: Path, tmp_path: Path) -> None:
    assert classify(slide_dir, tmp_path, "--workers", "0") == 0
    first = (tmp_path / "class_counts.json").stat().st_mtime_ns
    assert classify(slide_dir, tmp_path, "--workers", "0") == 0
    assert (tmp_path / "class_counts.json").stat().st_mtime_ns == first
    assert classify(slide_dir, tmp_path, "--workers", "0", "--force") == 0
    assert (tmp_path / "class_counts.json").stat().st_mtime_ns != first


def _fail_some_reads(monkeypatch: pytest.MonkeyPatch, bad_x: set[int]) -> None:
    real = data.read_tile

    def flaky(slide, plan, x, y):
        if x in bad_x:
            raise openslide.OpenSlideError("Not a JPEG file: starts with 0x00 0x00")
        return real(slide, plan, x, y)

    monkeypatch.setattr(data, "read_tile", flaky)


def test_tile_read_failures_are_counted(
    slide_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fail_some_reads(monkeypatch, {896})  # column 4: 12 of 48 tiles
    assert classify(slide_dir, tmp_path, "--workers", "0", "--max-failed-fraction", "0.5") == 0
    counts = json.loads((tmp_path / "class_counts.json").read_text())
    table = pd.read_csv(tmp_path / "classes.tsv", sep="\t")
    bad = table["x"] == 896
    assert counts["status"] == "ok"
    assert counts["n_failed_tiles"] == bad.sum() == 12
    assert sorted(map(tuple, counts["failed_tiles"])) == sorted(
        zip(table.loc[bad, "row"], table.loc[bad, "col"], strict=True)
    )
    assert (table.loc[bad, "read_ok"] == 0).all() and (table.loc[bad, "class"].isna()).all()
    assert table.loc[bad, "prob_TUM"].isna().all()
    grid = np.load(tmp_path / "class_grid.npy")
    assert (grid[:, 4] == -1).all() and (grid >= 0).sum() == 48 - 12
    assert sum(counts["counts"].values()) == 36


def test_too_many_read_failures_fail_the_slide(
    slide_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fail_some_reads(monkeypatch, {896})
    assert classify(slide_dir, tmp_path, "--workers", "0", "--max-failed-fraction", "0.1") == 0
    counts = json.loads((tmp_path / "class_counts.json").read_text())
    assert counts["status"] == "failed" and counts["failed_stage"] == "classify"
    assert "12 of 48 tiles (25.0%) could not be read" in counts["reason"]
    assert (np.load(tmp_path / "class_grid.npy") == -1).all()
    assert pd.read_csv(tmp_path / "classes.tsv", sep="\t").empty


def test_upstream_failure_is_passed_on(slide_dir: Path, tmp_path: Path) -> None:
    stain = json.loads((slide_dir / "stain.json").read_text())
    stain.update(status="failed", failed_stage="stain", reason="Macenko fit failed")
    (tmp_path / "stain.json").write_text(json.dumps(stain))
    assert classify(slide_dir, tmp_path, stain=tmp_path / "stain.json") == 0
    counts = json.loads((tmp_path / "class_counts.json").read_text())
    assert (counts["status"], counts["failed_stage"]) == ("failed", "stain")
    assert np.load(tmp_path / "class_grid.npy").shape == (13, 9)
    assert (tmp_path / "overlay.png").is_file()


def _bad_model(tmp_path: Path, slide_dir: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.pt"
    if kind == "truncated":
        full = (slide_dir / "model.pt").read_bytes()
        path.write_bytes(full[: len(full) // 2])
    elif kind == "crc":
        _model(path, CRC)
    elif kind == "other_target":
        shutil.copy(slide_dir / "model.pt", path)
        ckpt = torch.load(path, weights_only=True)
        ckpt["normalisation"]["stain_target"]["stain_matrix"] = [[0.6, 0.7, 0.3], [0.2, 0.8, 0.5]]
        torch.save(ckpt, path)
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("truncated", "cannot be read; the file is truncated or corrupt"),
        ("crc", r"was trained for classes \['ADI', .*but the config lists \['BACK'"),
        ("other_target", "trained on patches normalised to another Macenko target"),
        ("missing", "does not exist. Fix: train the model first"),
    ],
)
def test_bad_model_is_refused(
    slide_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, message: str
) -> None:
    model = _bad_model(tmp_path, slide_dir, kind)
    assert classify(slide_dir, tmp_path, model=model) == 2
    err = capsys.readouterr().err
    assert err.startswith("histoprog classify: error: model")
    assert not list(tmp_path.glob("class_*"))
    assert re.search(message, err), err


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("drop_params", "has status ok but no fitted stain parameters"),
        ("missing", r"stain output '.*': does not exist. Fix: run `histoprog stain`"),
    ],
)
def test_missing_stain_parameters(
    slide_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: str, message: str
) -> None:
    stain = tmp_path / "stain.json"
    if edit == "drop_params":
        record = json.loads((slide_dir / "stain.json").read_text())
        del record["params"]
        stain.write_text(json.dumps(record))
    assert classify(slide_dir, tmp_path, stain=stain) == 2
    assert re.search(message, capsys.readouterr().err)


def test_per_tile_stain_fit(slide_dir: Path, tmp_path: Path) -> None:
    record = json.loads((slide_dir / "stain.json").read_text())
    record["fit"] = "tile"
    del record["params"]
    (tmp_path / "stain.json").write_text(json.dumps(record))
    assert classify(slide_dir, tmp_path, "--workers", "0", stain=tmp_path / "stain.json") == 0
    counts = json.loads((tmp_path / "class_counts.json").read_text())
    assert counts["status"] == "ok" and counts["n_classified"] == 48
    assert 0 <= counts["n_stain_fit_failed"] < 48


def test_stain_on_device_gives_the_same_probabilities(slide_dir: Path) -> None:
    """Normalising batches in the main process (as on a GPU) equals the workers' numpy path."""
    from histoprog.inference import predict_tiles
    from histoprog.slides import ReadPlan
    from histoprog.stain import MacenkoParams

    meta = json.loads((slide_dir / "tiles.json").read_text())
    stain = json.loads((slide_dir / "stain.json").read_text())
    xy = pd.read_csv(slide_dir / "tiles.tsv", sep="\t")[["x", "y"]].to_numpy()[:24]
    torch.manual_seed(0)
    model = build_tissue_classifier(len(CLASSES), backbone="resnet18", weights=None)
    preds = {}
    for on_device in (False, True):
        dataset = data.SlideTiles(
            (slide_dir / "slide").read_text(), "cmu1", ReadPlan(**meta["read"]), xy,
            MacenkoNormalizer(None, TORCHSTAIN_BACKGROUND_INTENSITY),
            MacenkoParams.from_dict(stain["params"]),
        )  # fmt: skip
        preds[on_device] = predict_tiles(
            model, dataset, batch_size=8, workers=1, device=torch.device("cpu"),
            mean=data.IMAGENET_MEAN, std=data.IMAGENET_STD, stain_on_device=on_device,
        )  # fmt: skip
        assert dataset.stain_in_workers  # restored for the next use
    # the moved transform: raw tiles from the dataset, normalised by the returned function
    assert dataset.move_stain_to(torch.device("cpu")) is not None and not dataset.stain_in_workers
    raw = dataset[0][0]
    dataset.stain_in_workers = True
    assert not torch.equal(raw, dataset[0][0])
    assert preds[True].read_ok.all() and preds[True].stain_ok.all()
    np.testing.assert_array_equal(preds[True].probs, preds[False].probs)
