"""Spatial organisation features (SOFs) of a tissue-class grid (METHODS section 4).

A class grid is a 2-D integer array with one cell per tile of a slide: value ``i`` means
class ``CLASSES[i]`` and ``-1`` means "no tile" (dropped as blank, or outside the slide).
Everything in this module except :func:`fit_infiltration_thresholds` is pure numpy/scipy
and vectorised (no Python loop over tiles), so a 300 x 300 grid takes milliseconds.

Follows the CRLM-SPA paper (STAR methods, "Spatial organization features"), with the
choices it leaves open resolved in docs/methods.md section 4:

* overall_C = n_C / N over the tissue classes I = {TUM, STR, LYM, HEP, MUC, DEB}
  (N = number of tissue tiles; BACK and "no tile" cells are not tissue);
* tumour region = TUM mask -> dilation 5x5 -> erosion 3x3 (outside the grid counts as
  foreground) -> fill holes -> drop 4-connected components < 64 tiles;
* distance = Euclidean distance (tile units) to the nearest region tile, 0 inside;
* infiltrating_C / distal_C = share of tissue tiles that are C tiles with distance <= /
  > threshold_C, where threshold_C comes from a two-component Gaussian mixture fitted on
  the pooled distances of a discovery cohort (:func:`fit_infiltration_thresholds`);
* interaction_C = mean, over TUM tiles, of the share of class C among the tissue tiles of
  its 8-neighbourhood.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from histoprog.classes import CLASSES, NO_TILE
from histoprog.defaults import default
from histoprog.errors import InputError

__all__ = [
    "CLASSES",
    "TISSUE_CLASSES",
    "NON_TUMOUR_CLASSES",
    "QC_COLUMNS",
    "RegionParams",
    "tumour_region",
    "distance_to_region",
    "class_distances",
    "zone_grid",
    "fit_infiltration_thresholds",
    "compute_sofs",
    "sof_columns",
]

TISSUE_CLASSES: tuple[str, ...] = ("TUM", "STR", "LYM", "HEP", "MUC", "DEB")
"""The tissue classes I, in contract (column) order."""

NON_TUMOUR_CLASSES: tuple[str, ...] = ("STR", "LYM", "HEP", "MUC", "DEB")
"""I without TUM, in contract (column) order."""

QC_COLUMNS: tuple[str, ...] = ("n_tiles", "n_tissue", "tumour_region_tiles", "status")
"""QC keys that :func:`compute_sofs` returns after the feature columns."""

MIN_GMM_DISTANCES = 10
"""Fewest pooled distances (with at least 2 distinct values) a class needs for its GMM."""

_TUM = CLASSES.index("TUM")
_TISSUE_CODES = np.array([CLASSES.index(c) for c in TISSUE_CLASSES])
_EIGHT_NEIGHBOURS = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], dtype=np.int32)


@dataclass(frozen=True)
class RegionParams:
    """Parameters of the tumour region (config ``crlm.region``).

    Attributes:
        dilation: side of the square structuring element of the dilation (tiles).
        erosion: side of the square structuring element of the erosion (tiles).
        min_component_tiles: 4-connected region components smaller than this are removed.
        min_tumour_tiles: slides with fewer TUM tiles get status ``insufficient_tumour``.
    """

    dilation: int = default("crlm.region.dilation")
    erosion: int = default("crlm.region.erosion")
    min_component_tiles: int = default("crlm.region.min_component_tiles")
    min_tumour_tiles: int = default("crlm.region.min_tumour_tiles")

    def __post_init__(self) -> None:
        for name in ("dilation", "erosion", "min_component_tiles", "min_tumour_tiles"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise InputError(
                    f"sof parameter '{name}'",
                    f"must be a non-negative integer, got {value!r}",
                    "set it to a whole number of tiles in config.yaml",
                )
        if self.dilation < 1 or self.erosion < 1:
            raise InputError(
                "sof parameters 'dilation'/'erosion'",
                f"structuring element sizes must be >= 1, got {self.dilation}/{self.erosion}",
                "use 1 to switch a step off",
            )


def sof_columns() -> list[str]:
    """The SOF feature column names in contract order (sof.tsv, before the QC columns).

    Returns:
        ``overall_C`` for C in :data:`TISSUE_CLASSES`, then ``infiltrating_C``, then
        ``distal_C``, then ``interaction_C``, each for C in :data:`NON_TUMOUR_CLASSES`.
    """
    cols = [f"overall_{c}" for c in TISSUE_CLASSES]
    for kind in ("infiltrating", "distal", "interaction"):
        cols += [f"{kind}_{c}" for c in NON_TUMOUR_CLASSES]
    return cols


def _check_grid(grid: np.ndarray) -> np.ndarray:
    """Validate a class grid and return it as a C-contiguous int16 array."""
    arr = np.asarray(grid)
    if arr.ndim != 2:
        raise InputError(
            "class grid",
            f"must be a 2-D array (rows x cols), got shape {arr.shape}",
            "pass the per-slide class grid written by the classify stage",
        )
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(
            "class grid",
            f"must hold integer class codes, got dtype {arr.dtype}",
            f"encode classes as integers 0..{len(CLASSES) - 1} ({', '.join(CLASSES)}), "
            "-1 for no tile",
        )
    if arr.size and (arr.min() < NO_TILE or arr.max() >= len(CLASSES)):
        raise InputError(
            "class grid",
            f"has values outside -1..{len(CLASSES) - 1} (min {arr.min()}, max {arr.max()})",
            f"use codes 0..{len(CLASSES) - 1} for {', '.join(CLASSES)} and -1 for no tile",
        )
    return np.ascontiguousarray(arr, dtype=np.int16)


def tumour_region(grid: np.ndarray, params: RegionParams = RegionParams()) -> np.ndarray:  # noqa: B008
    """Tumour region mask of a class grid (METHODS 4.2).

    TUM mask -> binary dilation with a ``dilation`` x ``dilation`` square (outside the grid
    is background) -> binary erosion with an ``erosion`` x ``erosion`` square that treats
    outside the grid as foreground (``border_value=1``, so the region is not eaten away
    at the slide edge) -> fill holes (scipy's default: a background pocket not
    4-connected to the grid border is a hole) -> remove 4-connected components smaller
    than ``min_component_tiles``. The region may cover non-TUM and no-tile cells.

    This does not apply the ``min_tumour_tiles`` rule; :func:`compute_sofs` does.

    Args:
        grid: class grid (rows x cols, codes into :data:`CLASSES`, -1 = no tile).
        params: region parameters.

    Returns:
        Boolean mask with the grid's shape.
    """
    from scipy import ndimage  # here: sof_table and the figures need only the columns

    g = _check_grid(grid)
    mask = g == _TUM
    if not mask.any():
        return np.zeros(g.shape, dtype=bool)
    dil = np.ones((params.dilation, params.dilation), dtype=bool)
    ero = np.ones((params.erosion, params.erosion), dtype=bool)
    mask = ndimage.binary_dilation(mask, structure=dil, border_value=0)
    mask = ndimage.binary_erosion(mask, structure=ero, border_value=1)
    mask = ndimage.binary_fill_holes(mask)
    if params.min_component_tiles > 1:
        labels, n = ndimage.label(mask)  # default structure: 4-connectivity
        if n:
            sizes = np.bincount(labels.ravel(), minlength=n + 1)
            keep = sizes >= params.min_component_tiles
            keep[0] = False
            mask = keep[labels]
    return np.asarray(mask, dtype=bool)


def distance_to_region(region: np.ndarray) -> np.ndarray:
    """Euclidean distance (tile units) of every cell to the nearest region cell (METHODS 4.3).

    Args:
        region: boolean mask, e.g. from :func:`tumour_region`.

    Returns:
        Float array with the mask's shape: 0 inside the region, ``inf`` everywhere when
        the region is empty.
    """
    reg = np.asarray(region)
    if reg.ndim != 2:
        raise InputError(
            "tumour region", f"must be a 2-D mask, got shape {reg.shape}", "pass a 2-D array"
        )
    reg = reg.astype(bool)
    if not reg.any():
        return np.full(reg.shape, np.inf)
    from scipy import ndimage

    return ndimage.distance_transform_edt(~reg)


def _region_status(g: np.ndarray, params: RegionParams) -> tuple[np.ndarray, str]:
    """Region mask and status of a validated grid."""
    region = tumour_region(g, params)
    n_tissue = int(np.isin(g, _TISSUE_CODES).sum())
    if n_tissue == 0:
        return region, "no_tissue"
    if int((g == _TUM).sum()) < params.min_tumour_tiles or not region.any():
        return region, "insufficient_tumour"
    return region, "ok"


def class_distances(
    grid: np.ndarray,
    params: RegionParams = RegionParams(),  # noqa: B008
) -> dict[str, np.ndarray]:
    """Distances to the tumour region of the tiles of each non-tumour class.

    Pool these over the slides of a discovery cohort and pass them to
    :func:`fit_infiltration_thresholds`. Slides whose status is not ``ok`` (no tissue,
    fewer than ``min_tumour_tiles`` TUM tiles, or an empty region) contribute nothing:
    every array is empty, since they get no region-based SOFs either.

    Args:
        grid: class grid.
        params: region parameters.

    Returns:
        ``{C: 1-D float array}`` for C in :data:`NON_TUMOUR_CLASSES` (row-major tile order).
    """
    g = _check_grid(grid)
    region, status = _region_status(g, params)
    if status != "ok":
        return {c: np.empty(0) for c in NON_TUMOUR_CLASSES}
    dist = distance_to_region(region)
    return {c: dist[g == CLASSES.index(c)].astype(float) for c in NON_TUMOUR_CLASSES}


#: :func:`zone_grid` codes
NO_ZONE, INFILTRATING_ZONE, DISTAL_ZONE = 0, 1, 2


def zone_grid(
    grid: np.ndarray, distance: np.ndarray, thresholds: Mapping[str, float]
) -> np.ndarray:
    """Each cell's infiltrating/distal zone, as the SOFs count them (METHODS 4.4).

    A cell of a non-tumour class C is :data:`INFILTRATING_ZONE` when its distance to the
    tumour region (tile units) is at most threshold_C, else :data:`DISTAL_ZONE`; other
    cells, and classes whose threshold is NaN or missing, are :data:`NO_ZONE` (int8 grid).
    """
    zones = np.full(np.shape(grid), NO_ZONE, dtype=np.int8)
    for c in NON_TUMOUR_CLASSES:
        threshold = float(thresholds.get(c, math.nan))
        if math.isnan(threshold):
            continue
        is_c = grid == CLASSES.index(c)
        zones[is_c & (distance <= threshold)] = INFILTRATING_ZONE
        zones[is_c & (distance > threshold)] = DISTAL_ZONE
    return zones


def _gmm_threshold(d: np.ndarray, seed: int) -> float:
    """Largest distance the better-BIC two-component 1-D GMM assigns to its lower mean."""
    from sklearn.mixture import GaussianMixture  # lazy: the rest of the module is numpy-only

    x = d.reshape(-1, 1)
    best = None
    # 1-D: "tied" = one shared variance, "full" = one variance per component.
    for cov in ("tied", "full"):
        gmm = GaussianMixture(
            n_components=2, covariance_type=cov, random_state=seed, n_init=1, reg_covar=1e-6
        ).fit(x)
        bic = gmm.bic(x)
        if best is None or bic < best[0]:
            best = (bic, gmm)
    assert best is not None
    gmm = best[1]
    low = int(np.argmin(gmm.means_.ravel()))
    labels = gmm.predict(x)
    assigned = d[labels == low]
    if assigned.size == 0:  # cannot happen with a sane fit; fall back to the smallest value
        return float(d.min())
    return float(assigned.max())


def fit_infiltration_thresholds(
    pooled: Mapping[str, np.ndarray], seed: int = 0
) -> dict[str, float]:
    """Fit the infiltrating/distal distance thresholds on a discovery cohort (METHODS 4.4).

    For each class C, a two-component 1-D Gaussian mixture (scikit-learn
    ``GaussianMixture``, seeded) is fitted to the pooled distances twice, with equal
    (``tied``) and with unequal (``full``) variances; the fit with the lower BIC wins.
    threshold_C = the largest distance that the winner assigns (``predict``) to its
    lower-mean component.

    NaN policy: a class with fewer than :data:`MIN_GMM_DISTANCES` pooled distances, or
    with fewer than 2 distinct values, cannot support a two-component fit; its threshold
    is NaN (no error), and :func:`compute_sofs` then returns NaN ``infiltrating_C`` and
    ``distal_C`` for every slide. Missing classes count as empty.

    Args:
        pooled: ``{C: distances}`` for C in :data:`NON_TUMOUR_CLASSES`, e.g. the
            concatenation of :func:`class_distances` over the discovery slides.
        seed: random seed of the mixture fits.

    Returns:
        ``{C: threshold}`` for every C in :data:`NON_TUMOUR_CLASSES` (tile units or NaN).

    Raises:
        InputError: unknown class names, or distances that are negative or not finite.
    """
    unknown = sorted(set(pooled) - set(NON_TUMOUR_CLASSES))
    if unknown:
        raise InputError(
            "pooled distances",
            f"unknown class name(s) {unknown}",
            f"use keys from {list(NON_TUMOUR_CLASSES)}",
        )
    out: dict[str, float] = {}
    for c in NON_TUMOUR_CLASSES:
        d = np.asarray(pooled.get(c, np.empty(0)), dtype=float).ravel()
        if d.size and (not np.all(np.isfinite(d)) or d.min() < 0):
            raise InputError(
                f"pooled distances of class {c}",
                "contain negative, NaN or infinite values",
                "pool only the distances from class_distances() of slides with status 'ok'",
            )
        if d.size < MIN_GMM_DISTANCES or np.unique(d).size < 2:
            out[c] = math.nan
            continue
        out[c] = _gmm_threshold(d, seed)
    return out


def _interaction(g: np.ndarray) -> dict[str, float]:
    """Mean 8-neighbour share of each non-tumour class around TUM tiles (METHODS 4.5)."""
    from scipy import ndimage

    tum = g == _TUM
    # Outside the grid is "no tile": pad with zeros (mode="constant", cval=0).
    tissue = np.isin(g, _TISSUE_CODES).astype(np.int32)
    n_tissue = ndimage.convolve(tissue, _EIGHT_NEIGHBOURS, mode="constant", cval=0)
    use = tum & (n_tissue > 0)
    out: dict[str, float] = {}
    if not use.any():
        return {c: math.nan for c in NON_TUMOUR_CLASSES}
    denom = n_tissue[use].astype(float)
    for c in NON_TUMOUR_CLASSES:
        is_c = (g == CLASSES.index(c)).astype(np.int32)
        n_c = ndimage.convolve(is_c, _EIGHT_NEIGHBOURS, mode="constant", cval=0)
        out[c] = float(np.mean(n_c[use] / denom))
    return out


def compute_sofs(
    grid: np.ndarray,
    thresholds: Mapping[str, float],
    params: RegionParams = RegionParams(),  # noqa: B008
) -> dict[str, float | int | str]:
    """All SOFs and QC values of one slide's class grid (METHODS section 4).

    Status and NaN policy:

    * ``no_tissue``: no tissue tile (N = 0): every feature is NaN.
    * ``insufficient_tumour``: fewer than ``min_tumour_tiles`` TUM tiles, or a tumour
      region that is empty after removing small components (the paper excludes slides
      with "< 50 patches" of continuous tumour). The overall SOFs are kept; the
      infiltrating, distal and interaction SOFs are NaN.
    * ``ok``: everything computed. ``infiltrating_C``/``distal_C`` are NaN when
      threshold_C is NaN; ``interaction_C`` is NaN when no TUM tile has a tissue neighbour.

    Interaction uses every TUM tile of the slide (METHODS: "for each TUM tile"), not only
    those inside the tumour region; neighbours outside the grid or without a tile are not
    tissue, and TUM tiles with no tissue neighbour are skipped.

    Args:
        grid: class grid (rows x cols, codes into :data:`CLASSES`, -1 = no tile).
        thresholds: ``{C: threshold}`` for every C in :data:`NON_TUMOUR_CLASSES`, from
            :func:`fit_infiltration_thresholds` (stored in model.json).
        params: region parameters.

    Returns:
        Dict with the keys of :func:`sof_columns` (floats) then ``n_tiles`` (cells >= 0),
        ``n_tissue``, ``tumour_region_tiles`` (size of the region mask, reported for QC
        whatever the status) and ``status``.

    Raises:
        InputError: a malformed grid, or thresholds missing a class or negative.
    """
    g = _check_grid(grid)
    missing = [c for c in NON_TUMOUR_CLASSES if c not in thresholds]
    if missing:
        raise InputError(
            "infiltration thresholds",
            f"missing class(es) {missing}",
            "pass the thresholds fitted on the discovery cohort (model.json 'gmm_thresholds')",
        )
    thr = {c: float(thresholds[c]) for c in NON_TUMOUR_CLASSES}
    bad = [c for c, t in thr.items() if t < 0 or math.isinf(t)]
    if bad:
        raise InputError(
            "infiltration thresholds",
            f"negative or infinite value(s) for {bad}",
            "refit them with fit_infiltration_thresholds",
        )

    out: dict[str, float | int | str] = dict.fromkeys(sof_columns(), math.nan)
    region, status = _region_status(g, params)
    counts = np.bincount((g[g >= 0]).ravel(), minlength=len(CLASSES))
    n_tissue = int(counts[_TISSUE_CODES].sum())
    if status != "no_tissue":
        for c in TISSUE_CLASSES:
            out[f"overall_{c}"] = counts[CLASSES.index(c)] / n_tissue
    if status == "ok":
        dist = distance_to_region(region)
        for c in NON_TUMOUR_CLASSES:
            if math.isnan(thr[c]):
                continue
            d = dist[g == CLASSES.index(c)]
            n_inf = int((d <= thr[c]).sum())
            out[f"infiltrating_{c}"] = n_inf / n_tissue
            out[f"distal_{c}"] = (d.size - n_inf) / n_tissue
        for c, v in _interaction(g).items():
            out[f"interaction_{c}"] = v
    for k in sof_columns():
        out[k] = float(out[k])
    out["n_tiles"] = int((g >= 0).sum())
    out["n_tissue"] = n_tissue
    out["tumour_region_tiles"] = int(region.sum())
    out["status"] = status
    return out
