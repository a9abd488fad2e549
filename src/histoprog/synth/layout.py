"""Spatial model of a liver-metastasis section: latent parameters -> tissue-class grid.

One grid cell is one 224 px tile at 0.5 mpp (112 um); values index
:data:`histoprog.sof.CLASSES` (``BACK DEB HEP LYM MUC STR TUM``). A patient's latent
parameters (:class:`LayoutLatent`) are drawn independently of each other, and each one
drives one family of SOFs, so the SOFs vary widely across patients:

* ``tumour_fraction``, ``n_nodules``: tumour nodules (each >= ``MIN_NODULE_TILES`` tiles, so
  the SOF tumour region survives its 64-tile component filter) -> ``overall_TUM``;
* ``rim`` (share of the tumour border with a stromal rim: desmoplastic vs replacement
  growth) -> ``interaction_STR`` / ``interaction_HEP``;
* ``tumour_stroma`` (stroma inside the tumour) -> ``overall_STR``, ``interaction_STR``;
* ``necrosis`` (debris in the tumour cores) -> ``overall_DEB``, ``interaction_DEB``;
* ``lym_margin`` (lymphocytes at the invasive margin and inside the tumour) ->
  ``interaction_LYM``, ``infiltrating_LYM``;
* ``lym_distal``, ``portal_tracts`` (lymphoid aggregates and portal stroma far from the
  tumour) -> ``distal_LYM``, ``distal_STR``;
* ``mucus`` (mucin pools in and at the edge of the tumour) -> ``overall_MUC``.

Everything else inside the tissue outline is hepatocytes (HEP); outside it is BACK.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

from histoprog.errors import InputError
from histoprog.sof import CLASSES

__all__ = [
    "CODE",
    "MIN_NODULE_TILES",
    "MIN_TUM_TILES",
    "LayoutLatent",
    "sample_latent",
    "make_grid",
]

CODE: dict[str, int] = {c: i for i, c in enumerate(CLASSES)}
"""Grid code of each class name."""

MIN_NODULE_TILES = 80
"""Smallest tumour nodule (tiles); above the SOF region's 64-tile component filter."""

MIN_TUM_TILES = 75
"""Tumour tiles a grid aims to keep (the SOF ``min_tumour_tiles`` default is 50)."""

Kind = Literal["crlm", "hcc"]


@dataclass(frozen=True)
class LayoutLatent:
    """Latent parameters of one patient's tissue layout (see the module docstring)."""

    tissue_fill: float
    tumour_fraction: float
    n_nodules: int
    rim: float
    rim_width: int
    tumour_stroma: float
    necrosis: float
    lym_margin: float
    lym_distal: float
    portal_tracts: float
    mucus: float

    def as_dict(self) -> dict[str, float | int]:
        """The parameters as a plain dict (for truth tables)."""
        return asdict(self)


def sample_latent(rng: np.random.Generator, kind: Kind = "crlm") -> LayoutLatent:
    """Draw one patient's latent layout parameters.

    Args:
        rng: the patient's layout generator.
        kind: ``crlm`` (colorectal liver metastasis) or ``hcc`` (hepatocellular
            carcinoma: larger tumours, a fibrous capsule more often, no mucus).

    Returns:
        The latent parameters.
    """
    if kind == "hcc":
        return LayoutLatent(
            tissue_fill=float(rng.uniform(0.8, 0.95)),
            tumour_fraction=float(rng.uniform(0.35, 0.6)),
            n_nodules=int(rng.choice([1, 2], p=[0.8, 0.2])),
            rim=float(rng.beta(1.2, 0.8)),
            rim_width=int(rng.choice([1, 2], p=[0.7, 0.3])),
            tumour_stroma=float(rng.uniform(0.0, 0.12)),
            necrosis=float(0.0 if rng.random() < 0.5 else rng.uniform(0.02, 0.15)),
            lym_margin=float(rng.beta(1.0, 2.0)),
            lym_distal=float(rng.uniform(0.0, 3.0)),
            portal_tracts=float(rng.uniform(1.0, 5.0)),
            mucus=0.0,
        )
    return LayoutLatent(
        tissue_fill=float(rng.uniform(0.75, 0.95)),
        tumour_fraction=float(rng.uniform(0.22, 0.5)),
        n_nodules=int(rng.choice([1, 2], p=[0.7, 0.3])),
        rim=float(rng.beta(0.6, 0.6)),
        rim_width=int(rng.choice([1, 2], p=[0.6, 0.4])),
        tumour_stroma=float(rng.uniform(0.0, 0.25)),
        necrosis=float(0.0 if rng.random() < 0.25 else rng.uniform(0.03, 0.35)),
        lym_margin=float(rng.beta(0.8, 1.2)),
        lym_distal=float(rng.uniform(0.0, 6.0)),
        portal_tracts=float(rng.uniform(1.0, 6.0)),
        mucus=float(0.0 if rng.random() < 0.6 else rng.uniform(0.03, 0.2)),
    )


def _smooth(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth Gaussian noise with unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    sd = field.std()
    return field / sd if sd > 0 else field


def _take_lowest(score: np.ndarray, allowed: np.ndarray, n: int) -> np.ndarray:
    """Mask of the ``n`` allowed cells with the lowest score (stable order on ties)."""
    idx = np.flatnonzero(allowed.ravel())
    out = np.zeros(score.size, dtype=bool)
    n = min(max(n, 0), idx.size)
    if n:
        order = np.argsort(score.ravel()[idx], kind="stable")
        out[idx[order[:n]]] = True
    return out.reshape(score.shape)


def _tissue_outline(rows: int, cols: int, fill: float, rng: np.random.Generator) -> np.ndarray:
    """A blob-shaped tissue mask with at least one BACK cell at every grid edge."""
    rr, cc = np.mgrid[0:rows, 0:cols].astype(float)
    cy = (rows - 1) / 2 + rng.uniform(-0.5, 0.5)
    cx = (cols - 1) / 2 + rng.uniform(-0.5, 0.5)
    ry = (rows / 2 - 1.0) * fill
    rx = (cols / 2 - 1.0) * fill
    # A rounded square (superellipse, exponent 3) keeps most of the grid as tissue.
    rho = (np.abs((rr - cy) / ry) ** 3 + np.abs((cc - cx) / rx) ** 3) ** (1 / 3)
    rho += 0.12 * _smooth((rows, cols), 2.5, rng)
    tissue = rho < 1.0
    tissue[0, :] = tissue[-1, :] = False
    tissue[:, 0] = tissue[:, -1] = False
    labels, n = ndimage.label(tissue)
    if n > 1:  # keep the largest piece: one tissue section per slide
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        tissue = labels == int(np.argmax(sizes))
    return tissue


def _nodules(
    tissue: np.ndarray, latent: LayoutLatent, rng: np.random.Generator
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Tumour mask (all nodules) and nodule centres."""
    rows, cols = tissue.shape
    n_tissue = int(tissue.sum())
    # Enough tumour that >= MIN_TUM_TILES stay TUM after debris, stroma, mucus and
    # lymphocytes replace parts of it.
    kept = 1.0 - latent.necrosis - latent.tumour_stroma - latent.mucus
    kept -= 0.12 + 0.1 * latent.lym_margin
    floor = max(MIN_NODULE_TILES, math.ceil(MIN_TUM_TILES / max(kept, 0.3)))
    total = max(int(round(latent.tumour_fraction * n_tissue)), floor)
    n_nod = latent.n_nodules if total >= 2 * MIN_NODULE_TILES + 10 else 1
    shares = [1.0] if n_nod == 1 else [0.6, 0.4] if rng.random() < 0.5 else [0.5, 0.5]
    inner = ndimage.distance_transform_edt(tissue)
    tumour = np.zeros(tissue.shape, dtype=bool)
    centres: list[tuple[float, float]] = []
    rr, cc = np.mgrid[0:rows, 0:cols].astype(float)
    for share in shares:
        area = max(int(round(share * total)), MIN_NODULE_TILES)
        radius = math.sqrt(area / math.pi)
        # Centre: deep enough in the tissue, away from earlier nodules.
        ok = (inner >= min(radius * 0.7, inner.max() * 0.8)) & ~tumour
        for cy, cx in centres:
            ok &= np.hypot(rr - cy, cc - cx) > radius * 1.6
        cand = np.flatnonzero(ok.ravel())
        if cand.size == 0:
            cand = np.flatnonzero((tissue & ~tumour).ravel())
        if cand.size == 0:  # small grids: earlier nodules already fill the tissue
            break
        pick = int(cand[rng.integers(cand.size)])
        cy, cx = divmod(pick, cols)
        cy, cx = float(cy), float(cx)
        theta = np.arctan2(rr - cy, cc - cx)
        shape = (
            1.0
            + 0.15 * np.cos(2 * theta + rng.uniform(0, 2 * np.pi))
            + 0.08 * np.cos(3 * theta + rng.uniform(0, 2 * np.pi))
        )
        score = np.hypot(rr - cy, cc - cx) / shape + 0.6 * _smooth(tissue.shape, 1.5, rng)
        tumour |= _take_lowest(score, tissue & ~tumour, area)
        centres.append((cy, cx))
    # Keep each nodule one 4-connected piece: drop stray fragments below the minimum.
    labels, n = ndimage.label(tumour)
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        keep = sizes >= MIN_NODULE_TILES
        if not keep.any():
            keep[int(np.argmax(sizes))] = True
        tumour = keep[labels]
    return tumour, centres


def make_grid(latent: LayoutLatent, rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """Draw a tissue-class grid from latent parameters.

    Args:
        latent: the patient's latent parameters (:func:`sample_latent`).
        rows: grid rows (>= 16).
        cols: grid columns (>= 16).
        rng: the patient's layout generator (continues after :func:`sample_latent`).

    Returns:
        ``int8`` array (rows x cols) of codes into :data:`histoprog.sof.CLASSES`.

    Raises:
        InputError: a grid too small for a tumour nodule.
    """
    if rows < 16 or cols < 16:
        raise InputError(
            "grid size",
            f"{rows} x {cols} is too small for a tumour nodule of {MIN_NODULE_TILES} tiles",
            "use at least 16 x 16 cells",
        )
    shape = (rows, cols)
    grid = np.full(shape, CODE["BACK"], dtype=np.int8)
    tissue = _tissue_outline(rows, cols, latent.tissue_fill, rng)
    grid[tissue] = CODE["HEP"]
    tumour, centres = _nodules(tissue, latent, rng)
    grid[tumour] = CODE["TUM"]
    n_tum = int(tumour.sum())
    depth = ndimage.distance_transform_edt(tumour)

    # Necrotic debris in the cores (deepest tumour cells, slightly ragged).
    if latent.necrosis > 0:
        score = -(depth + 0.7 * _smooth(shape, 1.0, rng))
        core = _take_lowest(score, tumour & (depth >= 2), int(round(latent.necrosis * n_tum)))
        grid[core] = CODE["DEB"]
    # Intratumoural stroma: smooth bands through the tumour.
    if latent.tumour_stroma > 0:
        free = tumour & (grid == CODE["TUM"])
        band = _take_lowest(
            _smooth(shape, 1.2, rng), free, int(round(latent.tumour_stroma * n_tum))
        )
        grid[band] = CODE["STR"]
    # Mucin pools: blobs around 1-2 seeds in the tumour or on its edge.
    if latent.mucus > 0:
        seeds = np.flatnonzero((tumour & (depth <= 3)).ravel())
        dist = np.full(shape, np.inf)
        rr, cc = np.mgrid[0:rows, 0:cols]
        for s in rng.choice(seeds, size=min(seeds.size, int(rng.integers(1, 3))), replace=False):
            sy, sx = divmod(int(s), cols)
            dist = np.minimum(dist, np.hypot(rr - sy, cc - sx))
        score = dist + 0.8 * _smooth(shape, 1.0, rng)
        allowed = tissue & (grid != CODE["DEB"])
        grid[_take_lowest(score, allowed, int(round(latent.mucus * n_tum)))] = CODE["MUC"]

    # Stromal rim (desmoplastic border) on a share `rim` of the border, by angle.
    outside = tissue & ~tumour
    near = ndimage.binary_dilation(
        tumour, structure=np.ones((3, 3), bool), iterations=latent.rim_width
    )
    ring = near & outside & (grid == CODE["HEP"])
    if ring.any():
        rr, cc = np.mgrid[0:rows, 0:cols].astype(float)
        # Angle around the nearest nodule centre, fed through a random periodic profile.
        cen = np.array(centres)
        d2 = (rr[..., None] - cen[:, 0]) ** 2 + (cc[..., None] - cen[:, 1]) ** 2
        which = np.argmin(d2, axis=-1)
        theta = np.arctan2(rr - cen[which, 0], cc - cen[which, 1])
        profile = np.zeros(shape)
        for k in (1, 2, 3):
            profile += rng.normal() * np.cos(k * theta + rng.uniform(0, 2 * np.pi)) / k
        profile += 0.3 * _smooth(shape, 1.0, rng)
        grid[_take_lowest(profile, ring, int(round(latent.rim * ring.sum())))] = CODE["STR"]
    # Replacement growth: hepatocyte plates interdigitate with the unrimmed tumour edge.
    hep = grid == CODE["HEP"]
    touches_hep = ndimage.binary_dilation(hep, structure=np.ones((3, 3), bool))
    edge = (grid == CODE["TUM"]) & touches_hep & (depth <= 1)
    grid[edge & (rng.random(shape) < 0.35 * (1.0 - latent.rim))] = CODE["HEP"]

    # Lymphocytes: clustered at the invasive margin, isolated inside the tumour.
    dist_out = ndimage.distance_transform_edt(~tumour)
    margin = tissue & (((dist_out > 0) & (dist_out <= 2)) | (tumour & (depth <= 1)))
    margin &= np.isin(grid, [CODE["HEP"], CODE["STR"], CODE["TUM"]])
    u = ndimage.gaussian_filter(rng.random(shape), 0.8)
    u = (np.argsort(np.argsort(u.ravel(), kind="stable"), kind="stable") / u.size).reshape(shape)
    grid[margin & (u < 0.55 * latent.lym_margin)] = CODE["LYM"]
    inner_tum = (grid == CODE["TUM"]) & (depth > 1)
    grid[inner_tum & (rng.random(shape) < 0.08 * latent.lym_margin)] = CODE["LYM"]

    # Distal portal tracts (stroma) and lymphoid aggregates, >= 4 tiles from the tumour.
    scale = tissue.sum() / 400.0
    far = tissue & (dist_out >= 4) & (grid == CODE["HEP"])
    for code, rate, size in (
        (CODE["STR"], latent.portal_tracts, (1, 4)),
        (CODE["LYM"], latent.lym_distal, (2, 8)),
    ):
        for _ in range(int(rng.poisson(rate * scale))):
            cand = np.flatnonzero((far & (grid == CODE["HEP"])).ravel())
            if cand.size == 0:
                break
            sy, sx = divmod(int(cand[rng.integers(cand.size)]), cols)
            blob = np.zeros(shape, dtype=bool)
            blob[sy, sx] = True
            for _ in range(int(rng.integers(size[0], size[1] + 1)) - 1):
                grow = ndimage.binary_dilation(blob) & far & ~blob
                opts = np.flatnonzero(grow.ravel())
                if opts.size == 0:
                    break
                blob.flat[opts[rng.integers(opts.size)]] = True
            grid[blob] = code
    return grid
