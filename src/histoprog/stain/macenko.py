"""Macenko stain normalisation (CRLM), METHODS 2.1-2.2: torchstain's estimate, in numpy.

The estimate equals torchstain's torch backend (``TorchMacenkoNormalizer``, torchstain
1.4.1, a port of github.com/schaugf/HEnorm_python) step by step in float32, without
importing PyTorch (the per-slide ``stain`` stage starts faster):

* ``OD = -log((I + 1) / Io)``, the quotient in float32 and its log correctly rounded;
  tissue pixels have OD >= beta in every channel;
* the covariance of the tissue ODs as torch computes ``cov``: the mean by torch's float32
  cascade sum (four interleaved partial sums, four levels), and ``x @ x.T`` as the float32
  sum of the n products in order (what torch's CPU matrix product gives for a 3 x n by
  n x 3 product); both equal torch's bit for bit on the tested tiles and pools (numpy's
  own, more accurate, sums differ by up to 1e-5, which the small gap between the two
  smaller eigenvalues turns into 1e-4 in the stain vectors);
* eigenvectors of the two largest eigenvalues (numpy's ``eigh``, in float64 on the
  float32 covariance), the angle of each tissue pixel in their plane (``atan2``), the
  alpha and 100 - alpha percentiles as torchstain takes them (not interpolated: the
  ``k = 1 + round(0.01 q (n - 1))``-th smallest value), the two extreme stain vectors, H
  first (the larger red OD);
* least-squares concentrations of every pixel (float64, rounded to float32), their 99th
  percentiles ``maxC``, and torchstain's reconstruction ``Io exp(-HERef C)`` clipped at
  255 and truncated to integers.

Eigenvector signs: LAPACK's are arbitrary (torch's and numpy's differ). Flipping an
eigenvector reflects the angles, which swaps the two percentiles and gives the same two
stain vectors: exactly for the principal one (``atan2`` is odd in y, and the ranks of
alpha and 100 - alpha mirror each other for alpha = 1 and 0.5 at every pool size up to
1.1 M pixels; for other alphas some sizes move one angle to the adjacent order statistic,
where torchstain itself depends on its sign), to float rounding (2e-7) for the other.
Tissue pixels (OD >= beta in every channel) project on the principal eigenvector with one
sign, so their angles stay off ``atan2``'s branch cut at +-pi. Here it points away from
the positive OD octant (angles in (-pi, 0)), as torch's does on most H&E tiles.

tests/test_stain_macenko_torchstain.py compares all this with torchstain itself on
generated and real H&E tiles (stain vectors within 3e-5, maxC within 1e-5; about one
normalised value in 20,000 one grey level apart, from float rounding at the truncation).

The fixed-parameter transform is a single 3 x 3 linear map in OD space (target stain
matrix x concentration scaling x pseudo-inverse of the source stain matrix), which is
exactly torchstain's per-tile reconstruction with the source matrix held fixed.

Reference:
    Macenko M. et al., "A method for normalizing histology slides for quantitative
    analysis", ISBI 2009.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from histoprog.defaults import default
from histoprog.errors import InputError
from histoprog.stain.base import StainNormalizer, StainParams, check_background_intensity
from histoprog.stain.pixels import (
    TORCHSTAIN_HEREF,
    TORCHSTAIN_MAXCREF,
    check_batch,
    check_tile,
    od_table,
    pool_pixels,
)

if TYPE_CHECKING:
    import torch

TORCHSTAIN_BACKGROUND_INTENSITY = 240.0
"""torchstain's (and HEnorm_python's) background intensity ``Io``: the value config
``stain.io`` ships with, and the one of torchstain's own reference normaliser."""

F32 = np.float32


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


# -- torchstain's estimate in float32 ---------------------------------------------------


def _od_table32(background_intensity: float) -> np.ndarray:
    """float32 OD of each 8-bit value: ``-log((v + 1) / Io)``, the quotient in float32."""
    quotient = (np.arange(256, dtype=F32) + F32(1)) / F32(background_intensity)
    return (-np.log(quotient.astype(np.float64))).astype(F32)


def _cascade_sum(x: np.ndarray) -> np.ndarray:
    """Column sums of ``x`` (n x m float32) as torch's float32 ``multi_row_sum`` adds them.

    Sequential sums of ``2**p`` values (``p = max(4, ceil(log2 n) // 4)``) are added into a
    second level, flushed every ``2**p`` blocks into a third, and so on (four levels);
    then the leftover partial sums are added lowest level first.
    """
    n, m = x.shape
    step = 1 << max(4, (n - 1).bit_length() // 4)

    def level(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        full = v.shape[0] // step * step
        blocks = v[:full].reshape(-1, step, m).cumsum(axis=1, dtype=F32)[:, -1]
        rest = v[full:].cumsum(axis=0, dtype=F32)[-1] if v.shape[0] > full else np.zeros(m, F32)
        return blocks, rest

    b0, acc0 = level(x)
    b1, acc1 = level(b0)
    b2, acc2 = level(b1)
    acc3 = b2.cumsum(axis=0, dtype=F32)[-1] if len(b2) else np.zeros(m, F32)
    return ((acc0 + acc1) + acc2) + acc3


def _torch_mean(x: np.ndarray) -> np.ndarray:
    """``x.T.mean(dim=1)`` of an n x 3 float32 array as torch computes it on the CPU.

    torch sums each column as four interleaved cascade sums (elements ``i % 4``), adds
    the last ``n % 4`` values to the first, then the other three to it, and divides by n.
    """
    n = x.shape[0]
    q = n // 4
    out = np.empty(x.shape[1], F32)
    for j in range(x.shape[1]):
        col = x[:, j]
        part = _cascade_sum(col[: 4 * q].reshape(q, 4)) if q else np.zeros(4, F32)
        total = part[0]
        for v in col[4 * q :]:
            total = total + v
        for k in (1, 2, 3):
            total = total + part[k]
        out[j] = total
    return out / F32(n)


def _covariance(odhat: np.ndarray) -> np.ndarray:
    """The covariance ``cov(ODhat.T)`` (3 x 3 float32) as torchstain computes it with torch."""
    n = odhat.shape[0]
    centred = odhat - _torch_mean(odhat)
    cov = np.empty((3, 3), F32)
    for i in range(3):
        for j in range(i, 3):
            products = centred[:, i] * centred[:, j]
            cov[i, j] = cov[j, i] = products.cumsum(dtype=F32)[-1]  # in order, as torch.mm
    return cov / F32(n - 1)


def _plane(odhat: np.ndarray) -> np.ndarray:
    """Eigenvectors (3 x 2: second largest, largest) of the tissue OD covariance.

    The principal one points away from the positive OD octant (torch's usual sign on
    H&E), so the angles of tissue pixels lie in (-pi, 0); the other's sign does not matter.
    """
    _, vectors = np.linalg.eigh(_covariance(odhat))
    plane = vectors[:, [1, 2]].astype(F32)
    if plane[:, 1].sum() > 0:
        plane[:, 1] = -plane[:, 1]
    return plane


def _percentile(x: np.ndarray, q: float) -> np.float32:
    """Percentile as torchstain takes it: the ``1 + round(0.01 q (n - 1))``-th smallest value."""
    k = 1 + round(0.01 * float(q) * (x.size - 1))
    return np.partition(x, k - 1)[k - 1]


def _stain_vectors(odhat: np.ndarray, plane: np.ndarray, alpha: float) -> np.ndarray:
    """The stain vectors ``HE`` (3 x 2, H then E) from the extreme angles in ``plane``.

    Products are summed in torch's order (left to right), so the projections and the two
    vectors are torch's float32 values.
    """
    proj = odhat[:, :1] * plane[0] + odhat[:, 1:2] * plane[1] + odhat[:, 2:3] * plane[2]
    phi = np.arctan2(proj[:, 1], proj[:, 0])
    v_min, v_max = (
        plane[:, 0] * np.cos(a) + plane[:, 1] * np.sin(a)
        for a in (_percentile(phi, alpha), _percentile(phi, 100 - alpha))
    )
    return np.stack([v_min, v_max] if v_min[0] > v_max[0] else [v_max, v_min], axis=1)


@dataclass(frozen=True)
class _Estimate:
    """One Macenko estimate: stain vectors, concentrations of every pixel, their maxima."""

    he: np.ndarray  # 3 x 2 float32, columns H, E
    conc: np.ndarray  # 2 x P float32
    max_conc: np.ndarray  # 2 float32


def _estimate(od: np.ndarray, tissue: np.ndarray, alpha: float) -> _Estimate:
    """Torchstain's ``__compute_matrices`` on pixel ODs (P x 3 float32) and the tissue mask.

    Raises:
        np.linalg.LinAlgError: the eigen-decomposition failed.
    """
    odhat = od[tissue]
    he = _stain_vectors(odhat, _plane(odhat), alpha)
    conc = (np.linalg.pinv(he.astype(np.float64)) @ od.T).astype(F32)
    return _Estimate(he, conc, np.array([_percentile(c, 99) for c in conc]))


def _reconstruct(est: _Estimate, ref: np.ndarray, max_ref: np.ndarray, io: float) -> np.ndarray:
    """The reconstruction ``Io exp(-HERef C maxCRef / maxC)`` (P x 3 float32), clipped at 255."""
    conc = est.conc * (max_ref / est.max_conc)[:, None]
    od = ref[:, :1] * conc[0] + ref[:, 1:2] * conc[1]  # 3 x P, torch's order
    out = F32(io) * np.exp(-od)
    return np.minimum(out, F32(255), out=out).T


class MacenkoNormalizer(StainNormalizer):
    """Macenko stain normalisation, equal to torchstain's (torch backend) in numpy.

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
        self._od32 = _od_table32(self.background_intensity)
        self._table_cache: tuple[MacenkoParams, tuple[np.ndarray, np.ndarray]] | None = None
        self._device_tables: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        if target is None:  # torchstain's float32 HERef and maxCRef
            self.target = self._params(
                np.asarray(TORCHSTAIN_HEREF, dtype=F32),
                np.asarray(TORCHSTAIN_MAXCREF, dtype=F32),
                n_tiles=0,
                n_pixels=0,
                n_tissue_pixels=0,
            )
        else:
            self.target = self._fit_pixels(
                [check_tile(target, "target image")], what="target image", n_tiles=1
            )
        self._he_ref = self.target.matrix.T.astype(F32)  # torchstain's HERef, 3 x 2
        self._max_ref = np.asarray(self.target.max_conc, dtype=F32)

    # -- fitting -------------------------------------------------------------------

    def _options(self) -> dict[str, float]:
        """``alpha`` and ``beta`` for the parameter records."""
        return {"alpha": self.alpha, "beta": self.beta}

    def _od(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """float32 OD (P x 3) of uint8 pixels (P x 3) and torchstain's tissue mask."""
        od = self._od32[pixels]
        return od, ~np.any(od < F32(self.beta), axis=1)

    def _fit_pixels(
        self, tiles: Iterable[np.ndarray], what: str, n_tiles: int | None = None
    ) -> MacenkoParams:
        """Fit as torchstain fits a one-row mosaic of the pooled pixels of ``tiles``."""
        pixels, n, n_total = pool_pixels(tiles, self.max_pixels, self.seed)
        od, tissue = self._od(pixels)
        n_tissue = int(tissue.sum())
        if n_tissue < self.min_tissue_pixels:
            raise InputError(
                what,
                f"has too few tissue pixels for a Macenko fit ({n_tissue} with OD >= {self.beta} "
                f"in every channel, need {self.min_tissue_pixels})",
                "fit on tissue tiles (not blank or background), or lower min_tissue_pixels",
            )
        try:
            est = _estimate(od, tissue, self.alpha)
        except np.linalg.LinAlgError as exc:
            raise InputError(
                what, f"Macenko fit failed ({exc})", "fit on more, or more varied, tissue tiles"
            ) from exc
        he, max_c = est.he.T.astype(np.float64), est.max_conc.astype(np.float64)
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
        fitted as torchstain's ``TorchMacenkoNormalizer.fit`` fits a one-row mosaic of
        them: eigenvectors of the OD covariance of tissue pixels, alpha-percentile angles,
        and the 99th-percentile concentrations over all pooled pixels (torchstain's
        per-tile behaviour, pooled). Fitting on a single tile gives torchstain's per-tile
        parameters for that tile.

        Args:
            tiles: RGB uint8 tiles (H x W x 3; sizes may differ), e.g. up to 200 random
                tissue tiles of a slide.

        Returns:
            The source parameters for :meth:`transform`.

        Raises:
            InputError: no tiles, a malformed tile, too few tissue pixels or a degenerate
                fit.
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

    def _tables(self, params: MacenkoParams) -> tuple[np.ndarray, np.ndarray]:
        """Lookup tables A (256 x 3) and B (65536 x 3) with ``out = A[r] * B[256 g + b]``.

        ``Io * exp(-(M @ OD))`` with ``OD_j = -log((v_j + 1) / Io)`` factorises per input
        channel: ``out_i = Io * prod_j ((v_j + 1) / Io) ** M[i, j]``, so a tile needs two
        table gathers and one product per value, no log or exp. float32, cached for the
        last params.
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
        tables = (a.astype(F32), b.astype(F32))
        self._table_cache = (params, tables)
        self._device_tables = {}
        return tables

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
            chunk: tiles per step; small steps keep the temporaries in the CPU cache.

        Returns:
            N x H x W x 3 uint8 array.
        """
        return self._run(check_batch(tiles), params, max(1, int(chunk)))

    def _run(self, b: np.ndarray, params: MacenkoParams, step: int) -> np.ndarray:
        """Map a checked N x H x W x 3 batch through the tables, ``step`` tiles at a time.

        Preallocated float32 buffers (the clamp compares with a buffer of 255s: several
        times faster than with a scalar); float -> uint8 truncates, as torchstain's
        ``.int()``.
        """
        a, tb = self._tables(params)
        out = np.empty_like(b)
        n, p = b.shape[0], b.shape[1] * b.shape[2]
        if not n * p:
            return out
        src, dst = b.reshape(n, p, 3), out.reshape(n, p, 3)
        m = min(step, n) * p
        gb = np.empty(m, dtype=np.intp)
        fa = np.empty((m, 3), dtype=F32)
        fb = np.empty((m, 3), dtype=F32)
        top = np.full((m, 3), 255, dtype=F32)
        for i in range(0, n, step):
            pix = src[i : i + step].reshape(-1, 3)
            k = len(pix)
            g, x, y, t = gb[:k], fa[:k], fb[:k], top[:k]
            np.left_shift(pix[:, 1], 8, out=g, dtype=np.intp)
            np.bitwise_or(g, pix[:, 2], out=g)
            np.take(a, pix[:, 0], axis=0, out=x)
            np.take(tb, g, axis=0, out=y)
            np.multiply(x, y, out=x)
            np.minimum(x, t, out=x)
            dst[i : i + step].reshape(-1, 3)[:] = x  # float -> uint8 truncates
        return out

    def transform_tensor(self, tiles: torch.Tensor, params: MacenkoParams) -> torch.Tensor:
        """Normalise a uint8 tensor of tiles (N x H x W x 3) on the tensor's own device.

        The same tables and float32 operations as :meth:`transform_batch` (two gathers, one
        product, clamp, truncation), so the result is bit-identical on any device; on a GPU
        it takes the per-pixel work off the DataLoader workers (``classify``). The only
        method that needs PyTorch (imported here).
        """
        import torch

        tables = self._tables(params)
        if tiles.device not in self._device_tables:  # copied once per device and params
            a, b = (torch.from_numpy(t).to(tiles.device) for t in tables)
            self._device_tables[tiles.device] = (a, b)
        a, b = self._device_tables[tiles.device]
        flat = tiles.reshape(-1, 3).long()
        out = a.index_select(0, flat[:, 0])
        out.mul_(b.index_select(0, (flat[:, 1] << 8) | flat[:, 2])).clamp_(max=255.0)
        return out.to(torch.uint8).reshape(tiles.shape)

    # -- per-tile (paper) mode -----------------------------------------------------------

    def transform_per_tile(self, tile: np.ndarray) -> tuple[np.ndarray, bool]:
        """Per-tile normalisation as torchstain's ``normalize`` (``stain.fit: tile``).

        A tile whose fit fails (fewer than ``min_tissue_pixels`` tissue pixels, or a
        degenerate estimate) is returned unchanged with ``ok=False``; the caller counts
        those.

        Args:
            tile: RGB uint8 tile (H x W x 3).

        Returns:
            (normalised uint8 tile, ok).
        """
        t = check_tile(tile)
        od, tissue = self._od(t.reshape(-1, 3))
        if tissue.sum() < self.min_tissue_pixels:
            return t.copy(), False
        try:
            est = _estimate(od, tissue, self.alpha)
        except np.linalg.LinAlgError:
            return t.copy(), False
        with np.errstate(all="ignore"):  # a degenerate fit gives NaN, caught below
            out = _reconstruct(est, self._he_ref, self._max_ref, self.background_intensity)
        if not np.all(np.isfinite(out)):
            return t.copy(), False
        return out.astype(np.uint8).reshape(t.shape), True
