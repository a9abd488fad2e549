"""Macenko stain normalisation with torchstain (CRLM), METHODS 2.1-2.2.

The estimation itself is torchstain's (torch backend), so its numbers are torchstain's;
the fixed-parameter transform is a single 3 x 3 linear map in OD space (target stain
matrix x concentration scaling x pseudo-inverse of the source stain matrix), which is
exactly torchstain's per-tile reconstruction with the source matrix held fixed.

Reference:
    Macenko M. et al., "A method for normalizing histology slides for quantitative
    analysis", ISBI 2009 (torchstain's port of github.com/schaugf/HEnorm_python).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torchstain.torch.normalizers.macenko import TorchMacenkoNormalizer

from histoprog.defaults import default
from histoprog.errors import InputError
from histoprog.stain.base import StainNormalizer, StainParams, check_background_intensity
from histoprog.stain.pixels import check_batch, check_tile, od_table, pool_pixels

TORCHSTAIN_BACKGROUND_INTENSITY = 240.0
"""torchstain's (and HEnorm_python's) background intensity ``Io``: the value config
``stain.io`` ships with, and the one of torchstain's own reference normaliser."""


@dataclass(frozen=True, kw_only=True)
class MacenkoParams(StainParams):
    """Fitted Macenko stain parameters of one slide (or of the target).

    ``stain_matrix`` is torchstain's ``HE`` transposed and ``max_conc`` its ``maxC``; the
    other common fields are described in :class:`~histoprog.stain.base.StainParams`.

    Attributes:
        alpha: angle percentile.
        beta: OD transparency threshold (pixels with any channel below it are not tissue).
    """

    method: ClassVar[str] = "macenko"

    alpha: float
    beta: float


class MacenkoNormalizer(StainNormalizer):
    """Macenko stain normalisation with torchstain (torch backend).

    Two modes (METHODS 2.2): ``stain.fit: slide`` -> :meth:`fit` once on the slide's
    tiles, then :meth:`transform` / :meth:`transform_batch` with those parameters;
    ``stain.fit: tile`` -> :meth:`transform_per_tile`, torchstain's own per-tile
    ``normalize`` (as in the paper). Optical density is torchstain's
    ``OD = -log((I + 1) / I0)`` (no clipping).

    Args:
        target: RGB uint8 target image; ``None`` = torchstain's standard HERef/maxCRef.
        background_intensity: ``I0`` (torchstain's ``Io``), see
            :class:`~histoprog.stain.base.StainNormalizer`; the workflow passes config
            ``stain.io``.
        alpha: percentile of the angle distribution for the extreme stain vectors (default:
            config ``stain.alpha``, torchstain's 1; likewise ``beta``).
        beta: OD threshold; pixels with any channel OD below it are not tissue.
        min_tissue_pixels: fewest tissue pixels (OD >= beta in every channel) a fit needs.
        max_pixels: pooled pixels are randomly subsampled to about this many (seeded)
            before the slide fit (200 tiles of 224 px hold 10 M; 1 M random pixels pin
            the 1st/99th percentiles down to well below a grey level); ``None`` keeps all.
        seed: seed of that subsampling.

    Raises:
        InputError: bad parameters, a malformed target image or one with too few tissue
            pixels.
    """

    method = "macenko"
    params_type = MacenkoParams
    target: MacenkoParams

    def __init__(
        self,
        target: np.ndarray | None,
        background_intensity: float,
        *,
        alpha: float = default("stain.alpha"),
        beta: float = default("stain.beta"),
        min_tissue_pixels: int = 500,
        max_pixels: int | None = 1_000_000,
        seed: int = 0,
    ) -> None:
        self.background_intensity = check_background_intensity("Macenko", background_intensity)
        if not (0 <= alpha < 50) or beta < 0:
            raise InputError(
                "Macenko parameters",
                f"need 0 <= alpha < 50, beta >= 0; got alpha={alpha}, beta={beta}",
                "use torchstain's alpha=1, beta=0.15",
            )
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.min_tissue_pixels = int(min_tissue_pixels)
        self.max_pixels = max_pixels
        self.seed = int(seed)
        self._ts = TorchMacenkoNormalizer()
        self._table_cache: tuple[MacenkoParams, tuple[torch.Tensor, torch.Tensor]] | None = None
        self._device_tables: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        if target is None:
            self.target = self._params(
                self._ts.HERef.double().numpy().T,
                self._ts.maxCRef.double().numpy(),
                n_tiles=0,
                n_pixels=0,
                n_tissue_pixels=0,
            )
        else:
            self.target = self._fit_pixels(
                [check_tile(target, "target image")], what="target image", n_tiles=1
            )
            self._ts.HERef = torch.tensor(self.target.matrix.T, dtype=torch.float32)
            self._ts.maxCRef = torch.tensor(self.target.max_conc, dtype=torch.float32)

    # -- fitting -------------------------------------------------------------------

    def _options(self) -> dict[str, float]:
        """``alpha`` and ``beta`` for the parameter records."""
        return {"alpha": self.alpha, "beta": self.beta}

    def _n_tissue(self, rgb: torch.Tensor) -> int:
        """Count pixels torchstain treats as tissue (OD >= beta in every channel).

        Computed in float32 torch as torchstain computes its own tissue mask, so the count
        agrees with torchstain's pixel for pixel.
        """
        od = -torch.log((rgb.reshape(-1, 3).float() + 1) / self.background_intensity)
        return int((~torch.any(od < self.beta, dim=1)).sum())

    def _fit_pixels(
        self, tiles: Iterable[np.ndarray], what: str, n_tiles: int | None = None
    ) -> MacenkoParams:
        """Fit torchstain on the pooled pixels of ``tiles`` laid out as a 1-row mosaic."""
        pixels, n, n_total = pool_pixels(tiles, self.max_pixels, self.seed)
        rgb = torch.from_numpy(pixels)  # (P, 3) uint8
        n_tissue = self._n_tissue(rgb)
        if n_tissue < self.min_tissue_pixels:
            raise InputError(
                what,
                f"has too few tissue pixels for a Macenko fit ({n_tissue} with OD >= {self.beta} "
                f"in every channel, need {self.min_tissue_pixels})",
                "fit on tissue tiles (not blank or background), or lower min_tissue_pixels",
            )
        mosaic = rgb.T.reshape(3, 1, -1)  # torchstain expects [C, H, W]
        est = TorchMacenkoNormalizer()
        try:
            est.fit(mosaic, Io=self.background_intensity, alpha=self.alpha, beta=self.beta)
        except RuntimeError as exc:  # e.g. eigh failing on degenerate pixels
            raise InputError(
                what, f"Macenko fit failed ({exc})", "fit on more, or more varied, tissue tiles"
            ) from exc
        he = est.HERef.double().numpy().T  # (2, 3)
        max_c = est.maxCRef.double().numpy()
        if not (np.all(np.isfinite(he)) and np.all(np.isfinite(max_c)) and np.all(max_c > 0)):
            raise InputError(
                what,
                "Macenko fit gave a degenerate stain matrix (non-finite values, or a zero "
                "maximum concentration)",
                "fit on more, or more varied, tissue tiles",
            )
        return self._params(
            he,
            max_c,
            n_tiles=n if n_tiles is None else n_tiles,
            n_pixels=n_total,
            n_tissue_pixels=n_tissue,
        )

    def fit(self, tiles: Iterable[np.ndarray]) -> MacenkoParams:
        """Fit ONE source stain matrix and max concentrations on the pooled tiles (slide fit).

        The pixels of all tiles are pooled (randomly subsampled to ``max_pixels``) and
        passed to torchstain's ``TorchMacenkoNormalizer.fit`` as a one-row mosaic, so the
        estimate is torchstain's: eigenvectors of the OD covariance of tissue pixels,
        alpha-percentile angles, and the 99th-percentile concentrations over all pooled
        pixels (torchstain's per-tile behaviour, pooled). Fitting on a single tile gives
        torchstain's per-tile parameters for that tile.

        Args:
            tiles: RGB uint8 tiles (H x W x 3; sizes may differ), e.g. up to 200 random
                tissue tiles of a slide.

        Returns:
            The source parameters for :meth:`transform`.

        Raises:
            InputError: no tiles, a malformed tile, or too few tissue pixels.
        """
        return self._fit_pixels(tiles, what="tiles to fit")

    # -- fixed-parameter transform -------------------------------------------------------

    def od_map(self, params: MacenkoParams) -> np.ndarray:
        """The 3 x 3 matrix M with ``OD_out = M @ OD_in`` for fixed source parameters.

        ``M = HERef @ diag(maxCRef / maxC) @ pinv(HE)``: torchstain's least-squares
        concentrations, rescaled, recomposed with the target stains.
        """
        self.check_params(params)
        src = params.matrix.T  # (3, 2), torchstain's HE
        ref = self.target.matrix.T  # (3, 2), HERef
        scale = np.asarray(self.target.max_conc) / np.asarray(params.max_conc)
        return ref @ np.diag(scale) @ np.linalg.pinv(src)

    def _tables(self, params: MacenkoParams) -> tuple[torch.Tensor, torch.Tensor]:
        """Lookup tables A (256 x 3) and B (65536 x 3) with ``out = A[r] * B[256 g + b]``.

        ``Io * exp(-(M @ OD))`` with ``OD_j = -log((v_j + 1) / Io)`` factorises per input
        channel: ``out_i = Io * prod_j ((v_j + 1) / Io) ** M[i, j]``, so a tile needs two
        table gathers and one product per value, no log or exp. Cached for the last params.
        """
        cached = self._table_cache
        if cached is not None and cached[0] == params:
            return cached[1]
        m = self.od_map(params)
        lv = -od_table(self.background_intensity, plus_one=True)  # -OD of each 8-bit value
        a = self.background_intensity * np.exp(lv[:, None] * m[:, 0][None, :])
        bg = np.exp(lv[:, None] * m[:, 1][None, :])
        bb = np.exp(lv[:, None] * m[:, 2][None, :])
        b = (bg[:, None, :] * bb[None, :, :]).reshape(65536, 3)
        tables = (
            torch.from_numpy(a.astype(np.float32)),
            torch.from_numpy(b.astype(np.float32)),
        )
        self._table_cache = (params, tables)
        self._device_tables = {tables[0].device: tables}
        return tables

    @staticmethod
    def _apply(
        src: torch.Tensor, dst: torch.Tensor, tables: tuple[torch.Tensor, torch.Tensor], step: int
    ) -> None:
        """Map uint8 pixels ``src`` (N x P x 3) into ``dst`` through the tables.

        Works ``step`` tiles at a time with preallocated buffers; float -> uint8 truncates,
        as torchstain's ``.int()``.
        """
        a, b = tables
        n, p = src.shape[0], src.shape[1]
        m = min(step, n) * p
        idx = torch.empty(m, 3, dtype=torch.long)
        gb = torch.empty(m, dtype=torch.long)
        fa = torch.empty(m, 3)
        fb = torch.empty(m, 3)
        for i in range(0, n, step):
            k = min(step, n - i) * p
            ix, g, x, y = idx[:k], gb[:k], fa[:k], fb[:k]
            ix.copy_(src[i : i + step].reshape(-1, 3))
            torch.bitwise_left_shift(ix[:, 1], 8, out=g)
            g.bitwise_or_(ix[:, 2])
            torch.index_select(a, 0, ix[:, 0], out=x)
            torch.index_select(b, 0, g, out=y)
            x.mul_(y).clamp_(max=255.0)
            dst[i : i + step].reshape(-1, 3).copy_(x)  # float -> uint8 truncates

    def transform(self, tile: np.ndarray, params: MacenkoParams) -> np.ndarray:
        """Normalise one tile with fixed source parameters (no per-tile estimation).

        Equals torchstain's reconstruction ``Io * exp(-HERef @ (C * maxCRef / maxC))`` with
        ``C = pinv(HE) @ OD`` (torchstain's least squares), clipped at 255 and truncated
        to integers as torchstain does (float rounding moves a few values per million by
        one level).

        Args:
            tile: RGB uint8 tile (H x W x 3).
            params: source parameters from :meth:`fit`.

        Returns:
            Normalised RGB uint8 tile of the same shape.
        """
        t = check_tile(tile)
        return self._run(t[None], params, 1)[0]

    def transform_batch(
        self, tiles: np.ndarray, params: MacenkoParams, chunk: int = 2
    ) -> np.ndarray:
        """Normalise a batch of tiles (N x H x W x 3 uint8) with fixed source parameters.

        Args:
            tiles: stacked RGB uint8 tiles.
            params: source parameters from :meth:`fit`.
            chunk: tiles per torch call; small chunks keep the temporaries in the CPU
                cache (measured fastest at 1-4 tiles of 224 px).

        Returns:
            N x H x W x 3 uint8 array.
        """
        return self._run(check_batch(tiles), params, max(1, int(chunk)))

    def _run(self, b: np.ndarray, params: MacenkoParams, step: int) -> np.ndarray:
        """Transform a checked N x H x W x 3 batch."""
        tables = self._tables(params)
        out = np.empty_like(b)
        n = b.shape[0]
        if n and b.shape[1] * b.shape[2]:
            with torch.no_grad():
                src = torch.from_numpy(b).reshape(n, -1, 3)
                self._apply(src, torch.from_numpy(out).reshape(n, -1, 3), tables, step)
        return out

    def transform_tensor(self, tiles: torch.Tensor, params: MacenkoParams) -> torch.Tensor:
        """Normalise a uint8 tensor of tiles (N x H x W x 3) on the tensor's own device.

        The same tables and float32 operations as :meth:`transform_batch` (two gathers, one
        product, clamp, truncation), so the result is bit-identical on any device; on a GPU
        it takes the per-pixel work off the DataLoader workers (``classify``).
        """
        tables = self._tables(params)
        if tiles.device not in self._device_tables:  # copied once per device and params
            self._device_tables[tiles.device] = tuple(t.to(tiles.device) for t in tables)
        a, b = self._device_tables[tiles.device]
        flat = tiles.reshape(-1, 3).long()
        out = a.index_select(0, flat[:, 0])
        out.mul_(b.index_select(0, (flat[:, 1] << 8) | flat[:, 2])).clamp_(max=255.0)
        return out.to(torch.uint8).reshape(tiles.shape)

    # -- per-tile (paper) mode -----------------------------------------------------------

    def transform_per_tile(self, tile: np.ndarray) -> tuple[np.ndarray, bool]:
        """Per-tile normalisation by torchstain (``stain.fit: tile``, as in the paper).

        A tile whose fit fails (fewer than ``min_tissue_pixels`` tissue pixels, or a
        degenerate estimate) is returned unchanged with ``ok=False``; the caller counts
        those.

        Args:
            tile: RGB uint8 tile (H x W x 3).

        Returns:
            (normalised uint8 tile, ok).
        """
        t = check_tile(tile)
        x = torch.from_numpy(t)
        if self._n_tissue(x) < self.min_tissue_pixels:
            return t.copy(), False
        try:
            with torch.no_grad():
                out, _, _ = self._ts.normalize(
                    x.permute(2, 0, 1),
                    Io=self.background_intensity,
                    alpha=self.alpha,
                    beta=self.beta,
                    stains=False,
                )
        except RuntimeError:
            return t.copy(), False
        arr = out.numpy()
        if arr.min() < 0:  # NaN cast to int: torchstain's fit was degenerate
            return t.copy(), False
        return arr.astype(np.uint8), True
