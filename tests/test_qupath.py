"""QuPath GeoJSON (``histoprog geojson``): tile polygons land on their tiles in level-0 pixels
of generated 20x/40x SVS and TIFF slides, the tumour-region outline has the region's area,
zones follow the SOF thresholds, and shapely and QuPath's qubalab read the file back."""

from __future__ import annotations

import json
import math
from pathlib import Path

import geojson
import numpy as np
import openslide
import pandas as pd
import pytest
import shapely
from PIL import Image
from qubalab.objects.image_feature import ImageFeature
from qubalab.objects.object_type import ObjectType
from shapely.geometry import Point, box, shape
from shapely.ops import unary_union

from histoprog import slides
from histoprog.classes import CLASSES
from histoprog.cli import main
from histoprog.qupath import MIL_CLASS, REGION_CLASS, class_rgb, mask_polygons, region_geometry
from histoprog.sof import RegionParams, compute_sofs, distance_to_region, tumour_region
from histoprog.synth.render import SlideGeometry, SlideRenderer, TextureBank
from histoprog.synth.seeding import rng_for
from histoprog.synth.slide_writer import write_slide
from histoprog.synth.stain import random_stain

C = {c: i for i, c in enumerate(CLASSES)}
PARAMS = RegionParams(dilation=3, erosion=3, min_component_tiles=4, min_tumour_tiles=4)
REGION_ARGS = ["--dilation", "3", "--erosion", "3", "--min-component-tiles", "4",
               "--min-tumour-tiles", "4"]  # fmt: skip
THRESHOLDS = {"STR": 1.0, "LYM": 2.0, "HEP": None, "MUC": 1.5, "DEB": 1.0}


def planted_grid() -> np.ndarray:
    """9 x 10 cells: a BACK margin, a tumour block, stroma/lymphocytes near it, others far."""
    g = np.full((9, 10), C["BACK"], np.int8)
    g[1:8, 1:9] = C["STR"]
    g[2:6, 2:6] = C["TUM"]
    g[6, 1:5] = C["LYM"]
    g[1:4, 7:9] = C["HEP"]
    g[5:8, 7:9] = C["MUC"]
    g[7, 5:7] = C["DEB"]
    return g


@pytest.fixture(scope="module")
def banks() -> dict[float, TextureBank]:
    return {mpp: TextureBank.build(mpp, 11, n_variants=1) for mpp in (0.5, 0.25)}


def run_tile(slide: Path, out: Path, *extra: str) -> dict:
    assert main(["tile", "--slide", str(slide), "--slide-id", "s", *extra,
                 "--out-tiles", str(out / "tiles.tsv"), "--out-meta", str(out / "tiles.json"),
                 "--out-mask", str(out / "mask.png")]) == 0  # fmt: skip
    return json.loads((out / "tiles.json").read_text())


def made_up_classes(tiles: pd.DataFrame, planted: np.ndarray, seed: int = 0) -> pd.DataFrame:
    """classes.tsv as classify writes it: noisy probabilities peaking at the planted class;
    the last tile is unreadable (NaN probabilities, class NA, read_ok 0)."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(len(CLASSES)), len(tiles)) * 0.3
    codes = planted[tiles["row"], tiles["col"]]
    probs[np.arange(len(tiles)), codes] += 0.7
    table = tiles[["row", "col", "x", "y"]].copy()
    for i, c in enumerate(CLASSES):
        table[f"prob_{c}"] = probs[:, i]
    table["class"] = [CLASSES[k] for k in probs.argmax(axis=1)]
    table["read_ok"] = 1
    table.loc[table.index[-1], [f"prob_{c}" for c in CLASSES]] = np.nan
    table.loc[table.index[-1], ["class", "read_ok"]] = ["NA", 0]
    return table


def write_classify_outputs(out: Path, meta: dict, planted: np.ndarray) -> pd.DataFrame:
    tiles = pd.read_csv(out / "tiles.tsv", sep="\t")
    classes = made_up_classes(tiles, planted)
    classes.to_csv(out / "classes.tsv", sep="\t", index=False, na_rep="NA")
    grid = np.full((meta["grid"]["rows"], meta["grid"]["cols"]), -1, np.int8)
    ok = classes[classes["read_ok"] == 1]
    grid[ok["row"], ok["col"]] = ok["class"].map(C)
    np.save(out / "class_grid.npy", grid)
    (out / "class_counts.json").write_text(json.dumps({"status": "ok"}))
    (out / "thresholds.json").write_text(json.dumps({"thresholds": THRESHOLDS}))
    return classes


def run_geojson(out: Path, *extra: str, name: str = "annotations.geojson") -> int:
    return main(["geojson", "--pipeline", "crlm", "--slide-id", "s",
                 "--classes", str(out / "classes.tsv"), "--grid", str(out / "class_grid.npy"),
                 "--meta", str(out / "class_counts.json"), "--tiles-meta", str(out / "tiles.json"),
                 *REGION_ARGS, *extra, "--out", str(out / name)])  # fmt: skip


CASES = [("svs", 0.5, 4), ("tiff", 0.5, 2), ("svs", 0.25, 2), ("tiff", 0.25, 4)]


@pytest.fixture(scope="module", params=CASES, ids=[f"{f}-{m}mpp-x{k}" for f, m, k in CASES])
def crlm_slide(request, banks, tmp_path_factory) -> dict:
    """A generated slide, its real tile stage outputs, made-up classify outputs, the GeoJSON."""
    fmt, mpp, factor = request.param
    out = tmp_path_factory.mktemp(f"{fmt}{mpp}")
    planted = planted_grid()
    geom = SlideGeometry.make(*planted.shape, mpp, 3, factor)
    renderer = SlideRenderer(planted, geom, banks[mpp], random_stain(rng_for(0, "s")),
                             rng_for(0, "c"))  # fmt: skip
    path = write_slide(out / f"slide.{fmt}", renderer, fmt=fmt, mpp=mpp, magnification=10 / mpp)
    meta = run_tile(path, out)
    classes = write_classify_outputs(out, meta, planted)
    assert run_geojson(out, "--thresholds", str(out / "thresholds.json")) == 0
    collection = json.loads((out / "annotations.geojson").read_text())
    return dict(out=out, path=path, mpp=mpp, cell=geom.cell_px, planted=planted, meta=meta,
                classes=classes, collection=collection)  # fmt: skip


def split(collection: dict) -> tuple[list[dict], list[dict]]:
    feats = collection["features"]
    dets = [f for f in feats if f["properties"]["objectType"] == "detection"]
    anns = [f for f in feats if f["properties"]["objectType"] == "annotation"]
    assert len(dets) + len(anns) == len(feats)
    return dets, anns


def test_tile_polygons_cover_the_tiles_they_were_read_from(crlm_slide):
    meta, classes, collection = crlm_slide["meta"], crlm_slide["classes"], crlm_slide["collection"]
    step, mpp = meta["grid"]["step"], crlm_slide["mpp"]
    assert step == round(224 * 0.5 / mpp)  # 224 px at 0.5 um/px: 224 (20x) or 448 (40x)
    props = collection["properties"]
    assert props["status"] == "ok" and props["tile_size_level0"] == step
    assert props["slide_mpp"] == pytest.approx(mpp)
    dets, _ = split(collection)
    readable = classes[classes["read_ok"] == 1].reset_index(drop=True)
    assert len(dets) == props["n_detections"] == len(readable) == len(classes) - 1
    planted, cell = crlm_slide["planted"], crlm_slide["cell"]
    assert cell == step  # the generator draws one class per 112 um tile
    names = readable["class"].tolist()
    for det, tile, given in zip(dets, readable.itertuples(index=False), names, strict=True):
        poly = shape(det["geometry"])
        assert poly.is_valid and poly.area == step * step
        assert poly.bounds == (tile.x, tile.y, tile.x + step, tile.y + step)
        # the level-0 pixel the tile was read from (its top-left) and its last pixel
        assert poly.contains(Point(tile.x + 0.5, tile.y + 0.5))
        assert poly.contains(Point(tile.x + step - 0.5, tile.y + step - 0.5))
        assert not poly.contains(Point(tile.x - 0.5, tile.y + 0.5))
        # back to the class grid: the cell under the polygon's centre is the tile's cell
        cx, cy = poly.centroid.x, poly.centroid.y
        row, col = int(cy // cell), int(cx // cell)
        assert (row, col) == (tile.row, tile.col)
        assert det["properties"]["metadata"]["row"] == str(tile.row)
        name = det["properties"]["classification"]["name"]
        assert name == given == CLASSES[planted[row, col]]
        assert det["properties"]["classification"]["color"] == class_rgb(name)


def test_reading_the_polygon_with_openslide_gives_the_tile(crlm_slide):
    meta, collection = crlm_slide["meta"], crlm_slide["collection"]
    plan = slides.ReadPlan(**meta["read"])
    dets, _ = split(collection)
    slide = openslide.OpenSlide(crlm_slide["path"])
    try:
        rng = np.random.default_rng(1)
        for i in rng.choice(len(dets), 6, replace=False):
            x0, y0, x1, y1 = (int(v) for v in shape(dets[i]["geometry"]).bounds)
            tile = slides.read_tile(slide, plan, x0, y0).astype(np.float32)  # as classify reads
            full = slide.read_region((x0, y0), 0, (x1 - x0, y1 - y0)).convert("RGB")
            region = np.asarray(full.resize((plan.tile_px,) * 2, Image.Resampling.BOX), np.float32)
            shifted = slide.read_region((x0 + (x1 - x0) // 2, y0), 0, (x1 - x0, y1 - y0))
            other = shifted.convert("RGB").resize((plan.tile_px,) * 2, Image.Resampling.BOX)
            same = np.abs(region - tile).mean()
            assert same < 6.0, same
            assert np.abs(np.asarray(other, np.float32) - tile).mean() > 2 * same
    finally:
        slide.close()


def test_region_polygon_has_the_region_area(crlm_slide):
    meta, collection = crlm_slide["meta"], crlm_slide["collection"]
    step = meta["grid"]["step"]
    grid = np.load(crlm_slide["out"] / "class_grid.npy")
    region = tumour_region(grid, PARAMS)
    _, anns = split(collection)
    assert len(anns) == 1 and region.sum() >= 16
    ann = anns[0]["properties"]
    assert ann["classification"]["name"] == REGION_CLASS
    assert ann["measurements"]["tiles"] == region.sum() == collection["properties"][
        "tumour_region_tiles"]  # fmt: skip
    outline = shape(anns[0]["geometry"])
    assert outline.is_valid
    assert outline.area == region.sum() * step * step
    rows, cols = np.nonzero(region)
    o = meta["grid"]["origin_x"], meta["grid"]["origin_y"]
    boxes = [box(o[0] + c * step, o[1] + r * step, o[0] + (c + 1) * step, o[1] + (r + 1) * step)
             for r, c in zip(rows, cols, strict=True)]  # fmt: skip
    assert outline.symmetric_difference(unary_union(boxes)).area == 0


def test_zones_follow_the_thresholds_and_are_optional(crlm_slide):
    out, collection = crlm_slide["out"], crlm_slide["collection"]
    grid = np.load(out / "class_grid.npy")
    dist = distance_to_region(tumour_region(grid, PARAMS))
    dets, _ = split(collection)
    seen = set()
    for det in dets:
        p = det["properties"]
        name = p["classification"]["name"]
        r, c = int(p["metadata"]["row"]), int(p["metadata"]["col"])
        assert p["measurements"]["distance_to_region"] == pytest.approx(dist[r, c], abs=1e-4)
        thr = THRESHOLDS.get(name)
        if thr is None:  # TUM, BACK, and HEP (no fitted threshold)
            assert "zone" not in p["metadata"] and "infiltrating" not in p["measurements"]
            continue
        zone = "infiltrating" if dist[r, c] <= thr else "distal"
        assert p["metadata"]["zone"] == zone
        assert p["measurements"]["infiltrating"] == float(zone == "infiltrating")
        seen.add(zone)
    assert seen == {"infiltrating", "distal"}
    # the same counts as the SOFs (infiltrating_C and distal_C are shares of tissue tiles)
    sofs = compute_sofs(grid, {c: math.nan if t is None else t for c, t in THRESHOLDS.items()},
                        PARAMS)  # fmt: skip
    for c, t in THRESHOLDS.items():
        for zone in ("infiltrating", "distal"):
            n = sum(d["properties"]["classification"]["name"] == c
                    and d["properties"]["metadata"].get("zone") == zone for d in dets)  # fmt: skip
            expected = sofs[f"{zone}_{c}"] * sofs["n_tissue"]
            assert (n == 0) if t is None else n == pytest.approx(expected), (c, zone)
    zones = collection["properties"]["zones"]
    assert zones["infiltrating"] + zones["distal"] == sum("zone" in d["properties"]["metadata"]
                                                          for d in dets)  # fmt: skip
    # without thresholds: the same objects, no zones
    assert run_geojson(out, name="plain.geojson") == 0
    plain = json.loads((out / "plain.geojson").read_text())
    assert plain["properties"]["zones"] is None and plain["properties"]["thresholds"] is None
    assert len(plain["features"]) == len(collection["features"])
    assert not any("zone" in f["properties"].get("metadata", {}) for f in plain["features"])


def test_qubalab_and_shapely_read_the_file(crlm_slide):
    path = crlm_slide["out"] / "annotations.geojson"
    classes = crlm_slide["classes"]
    readable = classes[classes["read_ok"] == 1].reset_index(drop=True)
    with path.open() as f:
        collection = geojson.load(f)
    assert collection.is_valid and collection["type"] == "FeatureCollection"
    features = [ImageFeature.create_from_feature(f) for f in collection["features"]]
    detections = [f for f in features if f.is_detection]
    annotations = [f for f in features if f.is_annotation]
    assert len(detections) == len(readable) and len(annotations) == 1
    assert all(f.object_type == ObjectType.DETECTION for f in detections)
    assert annotations[0].classification.names == (REGION_CLASS,)
    assert [f.classification.names for f in detections] == [(c,) for c in readable["class"]]
    for f, tile in zip(detections, readable.itertuples(index=False), strict=True):
        assert tuple(f.classification.color) == tuple(class_rgb(f.classification.names[0]))
        for c in CLASSES:
            assert f.measurements[f"prob_{c}"] == pytest.approx(getattr(tile, f"prob_{c}"),
                                                                abs=1e-6)  # fmt: skip
        geometry = shapely.geometry.shape(f.geometry)
        assert geometry.bounds[:2] == (tile.x, tile.y)
    # strict JSON (no NaN), one feature per line
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert len(text.splitlines()) == len(features) + 2


def test_hcc_bag_tiles_carry_their_logits(banks, tmp_path):
    planted = planted_grid()
    geom = SlideGeometry.make(*planted.shape, 0.25, 3, 2)
    renderer = SlideRenderer(planted, geom, banks[0.25], random_stain(rng_for(3, "s")),
                             rng_for(3, "c"))  # fmt: skip
    path = write_slide(tmp_path / "h.tiff", renderer, fmt="tiff", mpp=0.25, magnification=40)
    meta = run_tile(path, tmp_path, "--target-mpp", "0.25", "--tile-px", "512")
    step = meta["grid"]["step"]
    assert step == 512
    tiles = pd.read_csv(tmp_path / "tiles.tsv", sep="\t")
    bag = tiles.sample(n=min(12, len(tiles)), random_state=0)[["row", "col", "x", "y"]]
    bag["logit"] = np.linspace(-2, 3, len(bag))
    bag.to_csv(tmp_path / "mil_tiles.tsv", sep="\t", index=False)
    score = {"status": "ok", "score": 0.7, "mean_logit": 0.5, "group": "high", "t": 0.4}
    (tmp_path / "mil_score.json").write_text(json.dumps(score))
    hcc = ["geojson", "--pipeline", "hcc", "--slide-id", "h",
           "--tiles-meta", str(tmp_path / "tiles.json"),
           "--mil-tiles", str(tmp_path / "mil_tiles.tsv")]  # fmt: skip
    out = tmp_path / "annotations.geojson"
    assert main([*hcc, "--mil-score", str(tmp_path / "mil_score.json"), "--out", str(out)]) == 0
    collection = json.loads(out.read_text())
    assert collection["properties"]["group"] == "high"
    assert collection["properties"]["n_detections"] == len(bag)
    features = [ImageFeature.create_from_feature(f) for f in geojson.loads(out.read_text())[
        "features"]]  # fmt: skip
    assert len(features) == len(bag)
    for f, tile in zip(features, bag.itertuples(index=False), strict=True):
        assert f.is_detection and f.classification.names == (MIL_CLASS,)
        assert f.measurements == {"mil_logit": pytest.approx(tile.logit)}
        assert shape(f.geometry).bounds == (tile.x, tile.y, tile.x + step, tile.y + step)
    # a slide that failed upstream: an empty collection that says why
    failed = {"status": "failed", "failed_stage": "nuclei", "reason": "no tissue tile"}
    (tmp_path / "mil_score.json").write_text(json.dumps(failed))
    assert main([*hcc, "--mil-score", str(tmp_path / "mil_score.json"), "--out", str(out)]) == 0
    collection = geojson.loads(out.read_text())
    assert collection.is_valid and collection["features"] == []
    assert {k: collection["properties"][k] for k in failed} == failed


def test_failed_crlm_slide_gets_an_empty_collection(tmp_path):
    (tmp_path / "class_counts.json").write_text(
        json.dumps({"status": "failed", "failed_stage": "tile", "reason": "unreadable file"})
    )
    (tmp_path / "tiles.json").write_text(json.dumps({"status": "failed"}))
    assert run_geojson(tmp_path) == 0  # classes.tsv and the grid are not even read
    collection = json.loads((tmp_path / "annotations.geojson").read_text())
    assert collection["type"] == "FeatureCollection" and collection["features"] == []
    props = collection["properties"]
    assert (props["status"], props["failed_stage"], props["reason"]) == (
        "failed", "tile", "unreadable file")  # fmt: skip
    # a missing input names the stage to run; missing options name themselves
    (tmp_path / "class_counts.json").unlink()
    assert run_geojson(tmp_path) == 2
    assert main(["geojson", "--pipeline", "hcc", "--slide-id", "h", "--tiles-meta", "t.json",
                 "--out", str(tmp_path / "x.geojson")]) == 2  # fmt: skip


@pytest.mark.parametrize("seed", range(3))
def test_mask_outline_is_valid_with_holes_and_corner_contacts(seed):
    rng = np.random.default_rng(seed)
    masks = [rng.random((12, 14)) < p for p in (0.3, 0.5, 0.7)]
    ring = np.ones((5, 5), bool)
    ring[2, 2] = False  # a one-cell hole
    diagonal = np.array([[1, 0], [0, 1]], bool)  # two cells touching at a corner
    pinched = np.ones((4, 4), bool)
    pinched[0, 0] = False
    pinched[1:3, 1:3] = False  # a hole that touches the outside at a corner
    for mask in [*masks, ring, diagonal, pinched]:
        geometry = region_geometry(mask, (100, 50), 10)
        outline = shape(geometry)
        assert outline.is_valid, shapely.is_valid_reason(outline)
        assert outline.area == mask.sum() * 100
        boxes = [box(100 + c * 10, 50 + r * 10, 110 + c * 10, 60 + r * 10)
                 for r, c in zip(*np.nonzero(mask), strict=True)]  # fmt: skip
        assert outline.symmetric_difference(unary_union(boxes)).area == 0
        for polygon in mask_polygons(mask):  # RFC 7946: exterior CCW, holes CW
            assert shapely.LinearRing(polygon[0]).is_ccw
            assert all(not shapely.LinearRing(h).is_ccw for h in polygon[1:])
    assert len(shape(region_geometry(ring, (0, 0), 1)).interiors) == 1
    assert len(shape(region_geometry(pinched, (0, 0), 1)).interiors) == 1
    assert shape(region_geometry(diagonal, (0, 0), 1)).geom_type == "MultiPolygon"
    assert region_geometry(np.zeros((3, 3), bool), (0, 0), 1) is None
