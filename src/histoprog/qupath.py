"""QuPath GeoJSON of one slide's tiles and tumour region (``annotations.geojson``).

Pure functions that build a GeoJSON FeatureCollection from the per-slide tables; the
``geojson`` command reads the files and writes the result. Coordinates are level-0 pixels
of the slide file (the frame OpenSlide's ``read_region`` uses): a tile whose table row
gives ``x``, ``y`` covers ``[x, x + step) x [y, y + step)``, where ``step`` is the grid
step of ``tiles.json`` (the tile's size at level 0, ``tile_px * target_mpp / slide_mpp``).

Each feature follows QuPath's GeoJSON import format (QuPath >= 0.4, ``File > Import
objects``): ``properties.objectType`` (``detection`` for tiles, ``annotation`` for the
tumour region), ``properties.classification`` (``name`` and RGB ``color``),
``properties.measurements`` (a flat name -> number map) and ``properties.metadata``
(name -> string). The collection's own ``properties`` (a GeoJSON foreign member that
QuPath ignores) say which slide it is, its status and how it was made.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from histoprog.classes import CLASSES
from histoprog.io import atomic_path
from histoprog.plots.colours import class_colour
from histoprog.sof import (
    DISTAL_ZONE,
    INFILTRATING_ZONE,
    NON_TUMOUR_CLASSES,
    RegionParams,
    compute_sofs,
    distance_to_region,
    tumour_region,
    zone_grid,
)

__all__ = [
    "MIL_CLASS",
    "REGION_CLASS",
    "class_rgb",
    "feature_collection",
    "crlm_features",
    "hcc_features",
    "mask_polygons",
    "qupath_feature",
    "region_geometry",
    "tile_polygon",
    "tile_zones",
    "write_geojson",
]

REGION_CLASS = "Tumour region"
"""Classification name of the tumour-region annotation."""
REGION_COLOUR = (0, 0, 0)
MIL_CLASS = "MIL tile"
"""Classification name of the HCC bag tiles (they have no tissue class)."""
MIL_COLOUR = (31, 119, 180)
INFILTRATING, DISTAL = "infiltrating", "distal"
PROB_DIGITS = 6

Ring = list[tuple[int, int]]
"""A closed ring of grid-corner coordinates (first point repeated last)."""


def rgb(hex_colour: str) -> list[int]:
    """``"#rrggbb"`` -> ``[r, g, b]``."""
    value = hex_colour.lstrip("#")
    return [int(value[i : i + 2], 16) for i in (0, 2, 4)]


def class_rgb(name: str) -> list[int]:
    """The class's colour in the classify overlay (``plots.colours``), as ``[r, g, b]``."""
    index = CLASSES.index(name) if name in CLASSES else len(CLASSES)
    return rgb(class_colour(name, index))


def tile_polygon(x: int, y: int, step: int) -> dict[str, Any]:
    """The square covering one tile at level 0 (counter-clockwise, RFC 7946)."""
    x0, y0, x1, y1 = int(x), int(y), int(x) + int(step), int(y) + int(step)
    return {
        "type": "Polygon",
        "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]],
    }


def qupath_feature(
    geometry: Mapping[str, Any],
    name: str,
    colour: Iterable[int],
    measurements: Mapping[str, float],
    metadata: Mapping[str, str] | None = None,
    object_type: str = "detection",
) -> dict[str, Any]:
    """One QuPath object (``detection`` or ``annotation``) as a GeoJSON Feature.

    NaN and infinite measurements are left out (JSON has no NaN; QuPath shows them as
    missing anyway).
    """
    properties: dict[str, Any] = {
        "objectType": object_type,
        "classification": {"name": name, "color": [int(c) for c in colour]},
        "measurements": {
            k: float(v) for k, v in measurements.items() if v is not None and math.isfinite(v)
        },
    }
    if metadata:
        properties["metadata"] = {k: str(v) for k, v in metadata.items()}
    return {"type": "Feature", "geometry": dict(geometry), "properties": properties}


def feature_collection(
    features: list[dict[str, Any]], properties: Mapping[str, Any]
) -> dict[str, Any]:
    """A FeatureCollection with the slide's record as its ``properties`` (foreign member)."""
    return {"type": "FeatureCollection", "properties": dict(properties), "features": features}


# --- tumour region outline -------------------------------------------------------------


def _boundary_edges(mask: np.ndarray) -> dict[tuple[int, int], list[tuple[tuple[int, int], int]]]:
    """Directed boundary edges of a mask's cells, by start corner: ``(end, cell index)``.

    Corners are ``(col, row)`` grid points. Each cell's sides that face a cell outside the
    mask run clockwise on screen (y down): top left->right, right top->bottom, bottom
    right->left, left bottom->top, so the mask is on the walker's right.
    """
    m = np.pad(mask.astype(bool), 1)
    inner = m[1:-1, 1:-1]
    cols = mask.shape[1]
    edges: dict[tuple[int, int], list[tuple[tuple[int, int], int]]] = {}
    sides = (
        (~m[:-2, 1:-1], (0, 0), (1, 0)),  # top
        (~m[1:-1, 2:], (1, 0), (1, 1)),  # right
        (~m[2:, 1:-1], (1, 1), (0, 1)),  # bottom
        (~m[1:-1, :-2], (0, 1), (0, 0)),  # left
    )
    for open_side, (sx, sy), (ex, ey) in sides:
        rows_, cols_ = np.nonzero(inner & open_side)
        for r, c in zip(rows_.tolist(), cols_.tolist(), strict=True):
            edges.setdefault((c + sx, r + sy), []).append(((c + ex, r + ey), r * cols + c))
    return edges


def _trace_rings(mask: np.ndarray) -> list[Ring]:
    """Closed boundary walks; at a corner shared by two diagonal cells, stay on one cell."""
    edges = _boundary_edges(mask)
    used: set[tuple[tuple[int, int], tuple[int, int]]] = set()
    rings: list[Ring] = []
    for start, outgoing in sorted(edges.items()):
        for first_end, first_cell in outgoing:
            if (start, first_end) in used:
                continue
            ring = [start]
            corner, end, cell = start, first_end, first_cell
            while (corner, end) not in used:
                used.add((corner, end))
                ring.append(end)
                options = edges[end]
                nxt = options[0] if len(options) == 1 else next(o for o in options if o[1] == cell)
                corner, (end, cell) = end, nxt
            rings.append(ring)
    return rings


def _split_at_repeats(ring: Ring) -> list[Ring]:
    """Split a closed walk that passes a corner twice into simple closed rings."""
    out: list[Ring] = []
    path: list[tuple[int, int]] = []
    seen: dict[tuple[int, int], int] = {}
    for point in ring[:-1]:
        if point in seen:
            i = seen[point]
            loop = path[i:] + [point]
            for p in path[i + 1 :]:
                del seen[p]
            del path[i + 1 :]
            out.append(loop)
        else:
            seen[point] = len(path)
            path.append(point)
    out.append(path + [path[0]])
    return [r for r in out if len(r) >= 5]


def _drop_collinear(ring: Ring) -> Ring:
    """Remove corners where the walk goes straight on."""
    pts = ring[:-1]
    keep = []
    n = len(pts)
    for i, (x, y) in enumerate(pts):
        (px, py), (nx, ny) = pts[i - 1], pts[(i + 1) % n]
        if (x - px) * (ny - y) - (y - py) * (nx - x) != 0:
            keep.append((x, y))
    return keep + [keep[0]]


def _signed_area(ring: Ring) -> float:
    """Shoelace area: positive for a counter-clockwise ring in (x, y) number order."""
    a = np.asarray(ring, dtype=np.float64)
    return float(np.sum(a[:-1, 0] * a[1:, 1] - a[1:, 0] * a[:-1, 1]) / 2)


def _inside(point: tuple[float, float], ring: Ring) -> bool:
    """Even-odd ray test (the point never lies on a grid line: no degenerate cases)."""
    a = np.asarray(ring, dtype=np.float64)
    x0, y0, x1, y1 = a[:-1, 0], a[:-1, 1], a[1:, 0], a[1:, 1]
    px, py = point
    crosses = (y0 > py) != (y1 > py)
    with np.errstate(divide="ignore", invalid="ignore"):
        xs = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
    return bool(np.sum(crosses & (xs > px)) % 2)


def _hole_point(hole: Ring) -> tuple[float, float]:
    """Centre of the cell just inside a hole, beside its first edge (the mask is on the right)."""
    (x0, y0), (x1, y1) = hole[0], hole[1]
    dx, dy = np.sign(x1 - x0), np.sign(y1 - y0)
    # left of the walking direction on screen (y down) is (dy, -dx)
    return (x0 + 0.5 * dx + 0.5 * dy, y0 + 0.5 * dy - 0.5 * dx)


def mask_polygons(mask: np.ndarray) -> list[list[Ring]]:
    """Outline of a boolean mask as polygons with holes, in grid-corner units.

    Cells that touch only at a corner become separate polygons (4-connectivity), and a
    hole that touches its polygon's outline at a corner stays a hole: every ring is
    simple, so the result is a valid (OGC) Polygon/MultiPolygon whose area is the number
    of cells.

    Args:
        mask: 2-D boolean array; cell ``(r, c)`` is the unit square ``[c, c+1] x [r, r+1]``.

    Returns:
        One ``[exterior, *holes]`` per polygon; exteriors counter-clockwise and holes
        clockwise in (x, y) number order (RFC 7946), each ring closed. Points are
        ``(col, row)`` corners.
    """
    shells: list[Ring] = []
    holes: list[Ring] = []
    for walk in _trace_rings(np.asarray(mask, dtype=bool)):
        for ring in _split_at_repeats(walk):
            ring = _drop_collinear(ring)
            (shells if _signed_area(ring) > 0 else holes).append(ring)
    polygons: list[list[Ring]] = [[s] for s in shells]
    areas = [_signed_area(s) for s in shells]
    for hole in holes:
        point = _hole_point(hole)
        owners = [i for i, s in enumerate(shells) if _inside(point, s)]
        if not owners:  # cannot happen: every hole lies inside a shell
            raise ValueError("a hole of the mask outline lies in no polygon")
        polygons[min(owners, key=areas.__getitem__)].append(hole)
    return polygons


def region_geometry(mask: np.ndarray, origin: tuple[int, int], step: int) -> dict[str, Any] | None:
    """GeoJSON Polygon/MultiPolygon of a grid mask in level-0 pixels; None when empty.

    Grid corner ``(c, r)`` maps to ``(origin_x + c * step, origin_y + r * step)``.
    """
    polygons = mask_polygons(mask)
    if not polygons:
        return None
    ox, oy = int(origin[0]), int(origin[1])
    coords = [
        [[[ox + c * int(step), oy + r * int(step)] for c, r in ring] for ring in polygon]
        for polygon in polygons
    ]
    if len(coords) == 1:
        return {"type": "Polygon", "coordinates": coords[0]}
    return {"type": "MultiPolygon", "coordinates": coords}


# --- CRLM ------------------------------------------------------------------------------


def tile_zones(
    grid: np.ndarray,
    distance: np.ndarray,
    thresholds: Mapping[str, float],
    rows: np.ndarray,
    cols: np.ndarray,
) -> list[str | None]:
    """Infiltrating/distal zone of each tile, as the SOFs count them (METHODS 4.4).

    A tile of a non-tumour class C is ``infiltrating`` when its distance to the tumour
    region (``distance``, tile units, 0 inside) is at most threshold_C, else ``distal``;
    other tiles, and classes whose threshold is NaN, get None. Only meaningful for a slide
    whose SOF status is ``ok`` (the SOFs have no infiltrating/distal values otherwise).
    """
    names = {INFILTRATING_ZONE: INFILTRATING, DISTAL_ZONE: DISTAL}
    return [names.get(int(z)) for z in zone_grid(grid, distance, thresholds)[rows, cols]]


def crlm_features(
    classes: pd.DataFrame,
    grid: np.ndarray,
    grid_meta: Mapping[str, Any],
    params: RegionParams,
    thresholds: Mapping[str, float] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Detections (one per classified tile) and the tumour-region annotation of a slide.

    Args:
        classes: ``classes.tsv`` of the classify stage (row, col, x, y, prob_<C>, class,
            read_ok); unreadable tiles (``read_ok`` 0) get no detection.
        grid: the slide's class grid (``class_grid.npy``).
        grid_meta: ``tiles.json``'s ``grid`` (origin_x, origin_y, step).
        params: the tumour-region parameters (config ``crlm.region``).
        thresholds: infiltration thresholds ``{C: tiles}``; None: no zones.

    Returns:
        The features (the region first, when there is one) and summary fields for the
        collection's properties (SOF status, region tiles, zone counts).
    """
    step = int(grid_meta["step"])
    origin = (int(grid_meta.get("origin_x", 0)), int(grid_meta.get("origin_y", 0)))
    nan_thresholds = dict.fromkeys(NON_TUMOUR_CLASSES, math.nan)
    sofs = compute_sofs(grid, nan_thresholds, params)
    region = tumour_region(grid, params)
    zoned = thresholds is not None and sofs["status"] == "ok"
    distance = distance_to_region(region)  # inf everywhere when the region is empty
    tiles = classes[classes["read_ok"].astype(int) == 1].reset_index(drop=True)
    rows = tiles["row"].to_numpy(dtype=np.int64)
    cols = tiles["col"].to_numpy(dtype=np.int64)
    zones = (
        tile_zones(grid, distance, thresholds or {}, rows, cols) if zoned else [None] * len(tiles)
    )
    prob_columns = [f"prob_{c}" for c in CLASSES if f"prob_{c}" in tiles.columns]
    probs = tiles[prob_columns].to_numpy(dtype=np.float64).round(PROB_DIGITS)
    features: list[dict[str, Any]] = []
    geometry = region_geometry(region, origin, step)
    if geometry is not None:
        features.append(
            qupath_feature(
                geometry,
                REGION_CLASS,
                REGION_COLOUR,
                {"tiles": int(region.sum())},
                {"sof_status": str(sofs["status"])},
                object_type="annotation",
            )
        )
    for i, (x, y, name) in enumerate(tiles[["x", "y", "class"]].itertuples(index=False)):
        measurements = dict(zip(prob_columns, probs[i].tolist(), strict=True))
        d = float(distance[rows[i], cols[i]])
        measurements["distance_to_region"] = round(d, 4) if math.isfinite(d) else d
        metadata = {"row": str(rows[i]), "col": str(cols[i])}
        if zones[i] is not None:
            measurements["infiltrating"] = float(zones[i] == INFILTRATING)
            metadata["zone"] = str(zones[i])
        features.append(
            qupath_feature(
                tile_polygon(x, y, step), str(name), class_rgb(str(name)), measurements, metadata
            )
        )
    summary = {
        "sof_status": sofs["status"],
        "tumour_region_tiles": int(region.sum()),
        "n_detections": len(tiles),
        "n_unreadable_tiles": int(len(classes) - len(tiles)),
        "zones": None
        if not zoned
        else {z: sum(1 for v in zones if v == z) for z in (INFILTRATING, DISTAL)},
    }
    return features, summary


# --- HCC -------------------------------------------------------------------------------


def hcc_features(
    tiles: pd.DataFrame, grid_meta: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One detection per MIL bag tile (``mil_tiles.tsv``) with its logit as ``mil_logit``."""
    step = int(grid_meta["step"])
    features = [
        qupath_feature(
            tile_polygon(x, y, step),
            MIL_CLASS,
            MIL_COLOUR,
            {"mil_logit": float(logit)},
            {"row": str(int(row)), "col": str(int(col))},
        )
        for row, col, x, y, logit in tiles[["row", "col", "x", "y", "logit"]].itertuples(
            index=False
        )
    ]
    return features, {"n_detections": len(features)}


# --- output ----------------------------------------------------------------------------


def write_geojson(path: str | os.PathLike[str], collection: Mapping[str, Any]) -> None:
    """Write a FeatureCollection atomically, one feature per line (strict JSON: no NaN)."""

    def dump(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)

    head = [f"{dump(k)}:{dump(v)}" for k, v in collection.items() if k != "features"]
    lines = [dump(f) for f in collection.get("features", [])]
    body = "[\n" + ",\n".join(lines) + "\n]" if lines else "[]"
    text = "{" + ",".join([*head, f'"features":{body}']) + "}\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)
