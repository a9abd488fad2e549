"""Vahadane (structure-preserving) stain normalisation, per slide (HCC), METHODS 2.3.

Reference:
    Vahadane A. et al., "Structure-preserving color normalization and sparse stain
    separation for histological images", IEEE TMI 35(8), 2016.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from histoprog.errors import InputError
from histoprog.stain.base import StainNormalizer, StainParams, check_background_intensity
from histoprog.stain.dictionary import learn_stain_dictionary, nonneg_lasso2
from histoprog.stain.pixels import (
    TORCHSTAIN_HEREF,
    TORCHSTAIN_MAXCREF,
    check_batch,
    check_tile,
    od_table,
    order_he,
    pool_pixels,
    unit_rows,
)

VAHADANE_BACKGROUND_INTENSITY = 255.0
"""The HCC workflow's Vahadane background intensity: 255, the 8-bit full scale (the
convention of staintools and of Vahadane's reference code). It has no config key."""


@dataclass(frozen=True, kw_only=True)
class VahadaneParams(StainParams):
    """Fitted Vahadane stain parameters of one slide (or of the target).

    ``stain_matrix`` rows are non-negative; ``max_conc`` are the 99th percentiles of the
    non-negative concentrations of the tissue pixels; the other common fields are
    described in :class:`~histoprog.stain.base.StainParams`.

    Attributes:
        beta: tissue threshold on the Euclidean norm of a pixel's OD.
        lambda_: L1 weight of the sparse dictionary learning.
        seed: seed of the pixel subsampling.
    """

    method: ClassVar[str] = "vahadane"

    beta: float
    lambda_: float
    seed: int


class VahadaneNormalizer(StainNormalizer):
    """Vahadane (structure-preserving) stain normalisation, per slide (METHODS 2.3).

    Fit: optical density ``OD = -log(max(I, 1) / I0)``, clipped at 0, of the pooled
    pixels; tissue pixels are those with ``||OD|| >= beta``; on a seeded random subsample
    of ``n_dict_pixels`` tissue pixels, the exact two-atom sparse non-negative dictionary
    learning of :mod:`histoprog.stain.dictionary` (``lambda_`` the L1 weight, Macenko's
    estimate as the start) learns the stain matrix: the objective of Vahadane et al.
    (SPAMS ``trainDL`` mode 2 in the original, scikit-learn's ``DictionaryLearning`` with
    positive dictionary and codes, which reaches the same objective about 30x slower). A fit
    whose two atoms are parallel, or one of which carries under 0.1 % of the concentration,
    found fewer than two stains and fails. Rows are scaled to unit length and ordered H
    (larger red OD), E.
    Concentrations are exact non-negative least squares on that matrix; ``max_conc`` =
    their 99th percentiles over the tissue pixels (up to ``max_pixels`` of them).

    Transform: concentrations of every pixel (NNLS) scaled by ``target.max_conc /
    source.max_conc``, recomposed with the target's stain matrix, ``I0 * exp(-OD)``,
    rounded to uint8.

    Default target (``target=None``): torchstain's standard HERef stain vectors (rows H,
    E) and maxCRef concentrations, as for Macenko; a target image is fitted with this same
    procedure instead.

    Args:
        target: RGB uint8 target image, or ``None`` for the standard reference.
        background_intensity: ``I0``, see :class:`~histoprog.stain.base.StainNormalizer`;
            the workflow passes :data:`VAHADANE_BACKGROUND_INTENSITY`.
        lambda_: L1 weight of the dictionary learning (Vahadane's lambda).
        beta: tissue threshold on the OD norm.
        n_dict_pixels: tissue pixels subsampled for the dictionary learning (speed; the
            6 numbers of a stain matrix need few pixels).
        max_pixels: tissue pixels subsampled for the concentration percentiles.
        min_tissue_pixels: fewest tissue pixels a fit needs.
        seed: seed of the pixel subsampling (the dictionary learning is deterministic).

    Raises:
        InputError: bad parameters, or a target image that cannot be fitted.
    """

    method = "vahadane"
    params_type = VahadaneParams
    target: VahadaneParams

    def __init__(
        self,
        target: np.ndarray | None,
        background_intensity: float,
        *,
        lambda_: float = 0.1,
        beta: float = 0.15,
        n_dict_pixels: int = 2000,
        max_pixels: int = 1_000_000,
        min_tissue_pixels: int = 500,
        seed: int = 0,
    ) -> None:
        self.background_intensity = check_background_intensity("Vahadane", background_intensity)
        if lambda_ < 0 or beta < 0 or n_dict_pixels < 2:
            raise InputError(
                "Vahadane parameters",
                f"need lambda_ >= 0, beta >= 0, n_dict_pixels >= 2; got "
                f"lambda_={lambda_}, beta={beta}, n_dict_pixels={n_dict_pixels}",
                "use the published lambda_=0.1 and beta=0.15",
            )
        self.lambda_ = float(lambda_)
        self.beta = float(beta)
        self.n_dict_pixels = int(n_dict_pixels)
        self.max_pixels = int(max_pixels)
        self.min_tissue_pixels = int(min_tissue_pixels)
        self.seed = int(seed)
        self._od = od_table(self.background_intensity, plus_one=False)
        if target is None:
            self.target = self._params(
                unit_rows(np.asarray(TORCHSTAIN_HEREF)),
                TORCHSTAIN_MAXCREF,
                n_tiles=0,
                n_pixels=0,
                n_tissue_pixels=0,
            )
        else:
            self.target = self._fit([check_tile(target, "target image")], "target image")

    def _options(self) -> dict[str, float]:
        """``beta``, ``lambda_`` and ``seed`` for the parameter records."""
        return {"beta": self.beta, "lambda_": self.lambda_, "seed": self.seed}

    def _fit(self, tiles: Iterable[np.ndarray], what: str) -> VahadaneParams:
        """Fit the stain matrix and max concentrations on the pooled tiles."""
        pixels, n_tiles, n_total = pool_pixels(tiles, None, self.seed)
        od = self._od[pixels]
        tissue = od[np.linalg.norm(od, axis=1) >= self.beta]
        if tissue.shape[0] < self.min_tissue_pixels:
            raise InputError(
                what,
                f"has too few tissue pixels for a Vahadane fit ({tissue.shape[0]} with OD norm "
                f">= {self.beta}, need {self.min_tissue_pixels})",
                "fit on tissue tiles (not blank or background), or lower min_tissue_pixels",
            )
        rng = np.random.default_rng(self.seed)
        if tissue.shape[0] > self.max_pixels:
            tissue = tissue[np.sort(rng.choice(tissue.shape[0], self.max_pixels, replace=False))]
        k = min(self.n_dict_pixels, tissue.shape[0])
        sample = tissue[np.sort(rng.choice(tissue.shape[0], k, replace=False))]
        w, codes, _ = learn_stain_dictionary(sample, self.lambda_)
        norms = np.linalg.norm(w, axis=1)
        cos = float(w[0] @ w[1] / (norms[0] * norms[1])) if np.all(norms > 1e-8) else 1.0
        usage = codes.sum(axis=0)
        unused = usage.min() <= 1e-3 * max(float(usage.sum()), 1e-300)
        if not np.all(np.isfinite(w)) or cos > math.cos(math.radians(2.0)) or unused:
            raise InputError(
                what,
                "the dictionary learning found fewer than two distinct stains "
                "(a stain is missing or the pixels are too uniform)",
                "fit on more, or more varied, H&E tissue tiles",
            )
        w = order_he(unit_rows(w))
        conc = nonneg_lasso2(tissue, w)
        max_c = np.percentile(conc, 99, axis=0)
        if not np.all(max_c > 0):
            raise InputError(
                what,
                "has a zero 99th-percentile concentration for a stain",
                "fit on H&E tissue tiles that show both stains",
            )
        return self._params(
            w,
            max_c,
            n_tiles=n_tiles,
            n_pixels=n_total,
            n_tissue_pixels=int(tissue.shape[0]),
        )

    def fit(self, tiles: Iterable[np.ndarray]) -> VahadaneParams:
        """Fit the source stain matrix and max concentrations of a slide's tiles.

        Args:
            tiles: RGB uint8 tiles (H x W x 3; sizes may differ).

        Returns:
            The source parameters for :meth:`transform`.

        Raises:
            InputError: no tiles, a malformed tile, too few tissue pixels, or fewer than
                two separable stains.
        """
        return self._fit(tiles, "tiles to fit")

    def _apply(self, pixels: np.ndarray, params: VahadaneParams) -> np.ndarray:
        """Normalise uint8 pixels (..., 3)."""
        self.check_params(params)
        # float32 throughout; OD of the 256 possible values from the lookup table
        conc = nonneg_lasso2(self._od.astype(np.float32)[pixels.reshape(-1, 3)], params.matrix)
        conc *= (np.asarray(self.target.max_conc) / np.asarray(params.max_conc)).astype(np.float32)
        out = conc @ (-self.target.matrix).astype(np.float32)
        np.exp(out, out=out)
        out *= np.float32(self.background_intensity)
        np.rint(out, out=out)
        np.clip(out, 0, 255, out=out)
        return out.astype(np.uint8).reshape(pixels.shape)

    def transform(self, tile: np.ndarray, params: VahadaneParams) -> np.ndarray:
        """Normalise one tile (H x W x 3 uint8) with a slide's parameters."""
        return self._apply(check_tile(tile), params)

    def transform_batch(self, tiles: np.ndarray, params: VahadaneParams) -> np.ndarray:
        """Normalise N x H x W x 3 uint8 tiles with a slide's parameters."""
        return self._apply(check_batch(tiles), params)
