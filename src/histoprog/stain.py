"""Stain normalisation of H&E tiles: Macenko (CRLM) and Vahadane (HCC), METHODS section 2.

Library only: RGB ``uint8`` arrays (H x W x 3, or N x H x W x 3 for batches) in, arrays
out. The per-slide stage reads tiles, calls ``fit`` once on up to 200 tissue tiles, writes
the parameters (``params.to_dict()`` is JSON-ready) and calls ``transform`` on every tile.

Conventions shared by both methods:

* A stain matrix is 2 x 3: row 0 = haematoxylin (H), row 1 = eosin (E), columns = optical
  density (OD) of R, G, B, each row of unit length. H is the row with the larger red OD
  component (haematoxylin absorbs red light, eosin hardly does; the same rule as
  torchstain's and staintools' ordering heuristics).
* ``max_conc`` holds the 99th percentiles of the H and E concentrations.

Macenko uses torchstain (torch backend) for the estimation itself, so its numbers are
torchstain's; the fixed-parameter transform is a single 3 x 3 linear map in OD space
(target stain matrix x concentration scaling x pseudo-inverse of the source stain
matrix), which is exactly torchstain's per-tile reconstruction with the source matrix
held fixed.

References:
    Macenko M. et al., "A method for normalizing histology slides for quantitative
    analysis", ISBI 2009 (torchstain's port of github.com/schaugf/HEnorm_python).
    Vahadane A. et al., "Structure-preserving color normalization and sparse stain
    separation for histological images", IEEE TMI 35(8), 2016.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Self

import numpy as np
import torch
from torchstain.torch.normalizers.macenko import TorchMacenkoNormalizer

from histoprog.errors import InputError

__all__ = [
    "MacenkoParams",
    "MacenkoNormalizer",
    "VahadaneParams",
    "VahadaneNormalizer",
]

StainMatrix = tuple[tuple[float, float, float], tuple[float, float, float]]

_TS_HEREF = ((0.5626, 0.7201, 0.4062), (0.2159, 0.8012, 0.5581))
"""torchstain's HERef (transposed to rows H, E)."""
_TS_MAXCREF = (1.9705, 1.0308)
"""torchstain's maxCRef."""


# ----------------------------------------------------------------------------- helpers


def _check_tile(tile: Any, what: str = "tile") -> np.ndarray:
    """Return ``tile`` as a C-contiguous uint8 H x W x 3 array or raise InputError."""
    if not isinstance(tile, np.ndarray):
        raise InputError(
            what, f"must be a numpy array, got {type(tile).__name__}", "pass an RGB array"
        )
    if tile.ndim != 3 or tile.shape[-1] != 3:
        fix = (
            "drop the alpha channel (tile[..., :3])"
            if tile.ndim == 3 and tile.shape[-1] == 4
            else ("pass one RGB tile of shape (height, width, 3)")
        )
        raise InputError(what, f"must have shape (height, width, 3), got {tile.shape}", fix)
    if tile.dtype != np.uint8:
        raise InputError(
            what,
            f"must have dtype uint8, got {tile.dtype}",
            "pass 8-bit RGB pixels (0..255), e.g. np.asarray(PIL_image.convert('RGB'))",
        )
    if tile.shape[0] == 0 or tile.shape[1] == 0:
        raise InputError(what, f"is empty (shape {tile.shape})", "pass a non-empty tile")
    return _writable(tile)


def _writable(a: np.ndarray) -> np.ndarray:
    """C-contiguous, writable view or copy (torch.from_numpy warns on read-only arrays)."""
    a = np.ascontiguousarray(a)
    return a if a.flags.writeable else a.copy()


def _check_batch(tiles: Any, what: str = "tile batch") -> np.ndarray:
    """Return ``tiles`` as a C-contiguous uint8 N x H x W x 3 array or raise InputError."""
    if not isinstance(tiles, np.ndarray) or tiles.ndim != 4 or tiles.shape[-1] != 3:
        shape = getattr(tiles, "shape", type(tiles).__name__)
        raise InputError(
            what,
            f"must be a numpy array of shape (n, height, width, 3), got {shape}",
            "stack equally sized RGB tiles with np.stack",
        )
    if tiles.dtype != np.uint8:
        raise InputError(what, f"must have dtype uint8, got {tiles.dtype}", "pass 8-bit RGB pixels")
    return _writable(tiles)


def _pool_pixels(
    tiles: Iterable[np.ndarray], max_pixels: int | None, seed: int
) -> tuple[np.ndarray, int, int]:
    """Concatenate the pixels of ``tiles`` (n x 3 uint8), subsampled to about ``max_pixels``.

    Subsampling keeps every ``k``-th pixel of each tile (``k = ceil(total / max_pixels)``)
    from a random (seeded) start, so every tile keeps its share, memory is read in order
    and the full pool is never built.

    Returns:
        (pixels, number of tiles, number of pixels before subsampling).
    """
    if isinstance(tiles, np.ndarray) and tiles.ndim == 3:
        raise InputError(
            "tiles",
            f"got a single array of shape {tiles.shape}, expected an iterable of tiles",
            "wrap a single tile in a list: fit([tile])",
        )
    checked = [_check_tile(t, f"tile {i} of the fitting set") for i, t in enumerate(tiles)]
    if not checked:
        raise InputError(
            "tiles", "no tiles given to fit the stain parameters", "pass at least one tissue tile"
        )
    n_total = sum(t.shape[0] * t.shape[1] for t in checked)
    chunks = [t.reshape(-1, 3) for t in checked]
    if max_pixels is not None and n_total > max_pixels:
        rng = np.random.default_rng(seed)
        step = math.ceil(n_total / max_pixels)
        chunks = [c[int(rng.integers(min(step, c.shape[0]))) :: step] for c in chunks]
    pixels = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
    return pixels, len(checked), n_total


def _unit_rows(m: np.ndarray) -> np.ndarray:
    """Scale the rows of ``m`` to unit Euclidean length."""
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def _order_he(m: np.ndarray) -> np.ndarray:
    """Order a 2 x 3 stain matrix as (H, E): H has the larger red OD component."""
    return m if m[0, 0] >= m[1, 0] else m[::-1].copy()


def _matrix_tuple(m: np.ndarray) -> StainMatrix:
    """2 x 3 array -> nested tuple of floats."""
    return (tuple(float(v) for v in m[0]), tuple(float(v) for v in m[1]))  # type: ignore[return-value]


def _params_from_dict(cls: type, d: Mapping[str, Any], method: str) -> Any:
    """Build a params dataclass from ``to_dict()`` output, validating method and shapes."""
    if d.get("method") != method:
        raise InputError(
            "stain parameters",
            f"are for method {d.get('method')!r}, expected {method!r}",
            f"use the JSON written by the {method} normaliser",
        )
    fields = {f for f in cls.__dataclass_fields__}  # type: ignore[attr-defined]
    missing = sorted(fields - set(d))
    if missing:
        raise InputError("stain parameters", f"missing key(s) {missing}", "re-run the stain fit")
    kw = {k: d[k] for k in fields}
    m = np.asarray(kw["stain_matrix"], dtype=float)
    c = np.asarray(kw["max_conc"], dtype=float)
    if (
        m.shape != (2, 3)
        or c.shape != (2,)
        or not (np.all(np.isfinite(m)) and np.all(np.isfinite(c)))
    ):
        raise InputError(
            "stain parameters",
            f"need a finite 2 x 3 'stain_matrix' and 2 'max_conc', got shapes {m.shape} "
            f"and {c.shape}",
            "re-run the stain fit",
        )
    kw["stain_matrix"] = _matrix_tuple(m)
    kw["max_conc"] = (float(c[0]), float(c[1]))
    return cls(**kw)


# ----------------------------------------------------------------------------- Macenko


class _StainParams:
    """JSON round trip and matrix view shared by the fitted-parameter dataclasses."""

    stain_matrix: StainMatrix
    max_conc: tuple[float, float]
    method: str

    @property
    def matrix(self) -> np.ndarray:
        """The stain matrix as a 2 x 3 float64 array."""
        return np.asarray(self.stain_matrix, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists and plain numbers)."""
        d = asdict(self)
        d["stain_matrix"] = [list(r) for r in self.stain_matrix]
        d["max_conc"] = list(self.max_conc)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Self:
        """Inverse of :meth:`to_dict`; raises InputError on a malformed dict."""
        return _params_from_dict(cls, d, cls.__dataclass_fields__["method"].default)


@dataclass(frozen=True)
class MacenkoParams(_StainParams):
    """Fitted Macenko stain parameters of one slide (or of the target).

    Attributes:
        stain_matrix: rows H, E; columns OD of R, G, B (torchstain's ``HE`` transposed).
        max_conc: 99th percentiles of the H and E concentrations (torchstain's ``maxC``).
        Io: transmitted light intensity used for OD.
        alpha: angle percentile.
        beta: OD transparency threshold (pixels with any channel below it are not tissue).
        n_tiles: tiles pooled for the fit (0 for torchstain's built-in reference).
        n_pixels: pixels pooled before subsampling.
        n_tissue_pixels: pixels that passed the OD threshold among those used.
        method: always ``"macenko"``.
    """

    stain_matrix: StainMatrix
    max_conc: tuple[float, float]
    Io: float
    alpha: float
    beta: float
    n_tiles: int
    n_pixels: int
    n_tissue_pixels: int
    method: str = "macenko"


class MacenkoNormalizer:
    """Macenko stain normalisation with torchstain (torch backend).

    Two modes (METHODS 2.2): ``stain.fit: slide`` -> :meth:`fit` once on the slide's
    tiles, then :meth:`transform` / :meth:`transform_batch` with those parameters;
    ``stain.fit: tile`` -> :meth:`transform_per_tile`, torchstain's own per-tile
    ``normalize`` (as in the paper).

    Args:
        target: RGB uint8 target image; ``None`` = torchstain's standard HERef/maxCRef.
        alpha: percentile of the angle distribution for the extreme stain vectors.
        beta: OD threshold; pixels with any channel OD below it are not tissue.
        Io: transmitted light intensity.
        min_tissue_pixels: fewest tissue pixels (OD >= beta in every channel) a fit needs.
        max_pixels: pooled pixels are randomly subsampled to about this many (seeded)
            before the slide fit (200 tiles of 224 px hold 10 M; 1 M random pixels pin
            the 1st/99th percentiles down to well below a grey level); ``None`` keeps all.
        seed: seed of that subsampling.

    Raises:
        InputError: a malformed target image or one with too few tissue pixels.
    """

    def __init__(
        self,
        target: np.ndarray | None = None,
        alpha: float = 1,
        beta: float = 0.15,
        Io: float = 240,
        *,
        min_tissue_pixels: int = 500,
        max_pixels: int | None = 1_000_000,
        seed: int = 0,
    ) -> None:
        if not (0 <= alpha < 50) or beta < 0 or Io <= 0:
            raise InputError(
                "Macenko parameters",
                f"need 0 <= alpha < 50, beta >= 0, Io > 0; got alpha={alpha}, beta={beta}, Io={Io}",
                "use the defaults alpha=1, beta=0.15, Io=240",
            )
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.Io = float(Io)
        self.min_tissue_pixels = int(min_tissue_pixels)
        self.max_pixels = max_pixels
        self.seed = int(seed)
        self._ts = TorchMacenkoNormalizer()
        self._table_cache: tuple[MacenkoParams, tuple[torch.Tensor, torch.Tensor]] | None = None
        if target is None:
            self.target = MacenkoParams(
                stain_matrix=_matrix_tuple(self._ts.HERef.double().numpy().T),
                max_conc=(float(self._ts.maxCRef[0]), float(self._ts.maxCRef[1])),
                Io=self.Io,
                alpha=self.alpha,
                beta=self.beta,
                n_tiles=0,
                n_pixels=0,
                n_tissue_pixels=0,
            )
        else:
            self.target = self._fit_pixels(
                [_check_tile(target, "target image")], what="target image", n_tiles=1
            )
            self._ts.HERef = torch.tensor(self.target.matrix.T, dtype=torch.float32)
            self._ts.maxCRef = torch.tensor(self.target.max_conc, dtype=torch.float32)

    # -- fitting -------------------------------------------------------------------

    def _n_tissue(self, rgb: torch.Tensor) -> int:
        """Count pixels torchstain treats as tissue (OD >= beta in every channel)."""
        od = -torch.log((rgb.reshape(-1, 3).float() + 1) / self.Io)
        return int((~torch.any(od < self.beta, dim=1)).sum())

    def _fit_pixels(
        self, tiles: Iterable[np.ndarray], what: str, n_tiles: int | None = None
    ) -> MacenkoParams:
        """Fit torchstain on the pooled pixels of ``tiles`` laid out as a 1-row mosaic."""
        pixels, n, n_total = _pool_pixels(tiles, self.max_pixels, self.seed)
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
            est.fit(mosaic, Io=self.Io, alpha=self.alpha, beta=self.beta)
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
        return MacenkoParams(
            stain_matrix=_matrix_tuple(he),
            max_conc=(float(max_c[0]), float(max_c[1])),
            Io=self.Io,
            alpha=self.alpha,
            beta=self.beta,
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
        if not isinstance(params, MacenkoParams):
            raise InputError(
                "stain parameters",
                f"must be MacenkoParams, got {type(params).__name__}",
                "pass the result of MacenkoNormalizer.fit or MacenkoParams.from_dict",
            )
        if not math.isclose(params.Io, self.Io):
            raise InputError(
                "stain parameters",
                f"were fitted with Io={params.Io}, this normaliser uses Io={self.Io}",
                "create the normaliser with the same Io as the fit",
            )
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
        lv = np.log((np.arange(256) + 1.0) / self.Io)  # -OD of each 8-bit value
        a = self.Io * np.exp(lv[:, None] * m[:, 0][None, :])
        bg = np.exp(lv[:, None] * m[:, 1][None, :])
        bb = np.exp(lv[:, None] * m[:, 2][None, :])
        b = (bg[:, None, :] * bb[None, :, :]).reshape(65536, 3)
        tables = (
            torch.from_numpy(a.astype(np.float32)),
            torch.from_numpy(b.astype(np.float32)),
        )
        self._table_cache = (params, tables)
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
        t = _check_tile(tile)
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
        return self._run(_check_batch(tiles), params, max(1, int(chunk)))

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
        t = _check_tile(tile)
        x = torch.from_numpy(t)
        if self._n_tissue(x) < self.min_tissue_pixels:
            return t.copy(), False
        try:
            with torch.no_grad():
                out, _, _ = self._ts.normalize(
                    x.permute(2, 0, 1), Io=self.Io, alpha=self.alpha, beta=self.beta, stains=False
                )
        except RuntimeError:
            return t.copy(), False
        arr = out.numpy()
        if arr.min() < 0:  # NaN cast to int: torchstain's fit was degenerate
            return t.copy(), False
        return arr.astype(np.uint8), True


# ----------------------------------------------------------------------------- Vahadane


@dataclass(frozen=True)
class VahadaneParams(_StainParams):
    """Fitted Vahadane stain parameters of one slide (or of the target).

    Attributes:
        stain_matrix: rows H, E (unit length, non-negative); columns OD of R, G, B.
        max_conc: 99th percentiles of the non-negative H and E concentrations of the
            tissue pixels.
        Io: transmitted light intensity used for OD.
        beta: tissue threshold on the Euclidean norm of a pixel's OD.
        lambda_: L1 weight of the sparse dictionary learning.
        seed: seed of the pixel subsampling and the dictionary learning.
        n_tiles: tiles pooled for the fit (0 for the built-in reference).
        n_pixels: pixels pooled.
        n_tissue_pixels: tissue pixels among the pixels used.
        method: always ``"vahadane"``.
    """

    stain_matrix: StainMatrix
    max_conc: tuple[float, float]
    Io: float
    beta: float
    lambda_: float
    seed: int
    n_tiles: int
    n_pixels: int
    n_tissue_pixels: int
    method: str = "vahadane"


def _nnls2(od: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Exact non-negative least squares of every OD row on a 2-stain matrix.

    Solves ``min_c ||od_i - c @ w||^2, c >= 0`` for all rows at once: the unconstrained
    solution where it is non-negative, else the better of the two one-stain solutions.

    Args:
        od: n x 3 optical densities.
        w: 2 x 3 stain matrix (linearly independent rows).

    Returns:
        n x 2 non-negative concentrations.
    """
    w = w.astype(od.dtype, copy=False)
    g = w @ w.T  # (2, 2)
    b = od @ w.T  # (n, 2)
    c = b @ np.linalg.inv(g).astype(od.dtype)  # unconstrained, g symmetric
    bad = np.any(c < 0, axis=1)
    if bad.any():
        bb = b[bad]
        c1 = np.maximum(bb[:, 0] / g[0, 0], 0.0)  # H only
        c2 = np.maximum(bb[:, 1] / g[1, 1], 0.0)  # E only
        # objective 0.5 c'Gc - b'c (constant dropped)
        f1 = 0.5 * g[0, 0] * c1**2 - bb[:, 0] * c1
        f2 = 0.5 * g[1, 1] * c2**2 - bb[:, 1] * c2
        use1 = f1 <= f2
        sub = np.zeros_like(bb)
        sub[use1, 0] = c1[use1]
        sub[~use1, 1] = c2[~use1]
        c[bad] = sub
    return c


class VahadaneNormalizer:
    """Vahadane (structure-preserving) stain normalisation, per slide (METHODS 2.3).

    Fit: optical density ``OD = -log(max(I, 1) / Io)`` of the pooled pixels; tissue pixels
    are those with ``||OD|| >= beta``; on a seeded random subsample of ``n_dict_pixels``
    tissue pixels, scikit-learn's ``DictionaryLearning`` (2 atoms, ``alpha=lambda_``,
    coordinate descent, positive dictionary and positive codes, seeded) learns the
    stain matrix, the objective of Vahadane et al. (SPAMS ``trainDL`` mode 2 in the
    original). Rows are scaled to unit length and ordered H (larger red OD), E.
    Concentrations are exact non-negative least squares on that matrix; ``max_conc`` =
    their 99th percentiles over the tissue pixels (up to ``max_pixels`` of them).

    Transform: concentrations of every pixel (NNLS) scaled by ``target.max_conc /
    source.max_conc``, recomposed with the target's stain matrix, ``Io * exp(-OD)``,
    rounded to uint8.

    Default target (no ``target`` image): torchstain's standard HERef stain vectors
    (rows H, E) and maxCRef concentrations, so both normalisers aim at the same standard
    appearance; pass a target image to fit the target with this same procedure instead.

    Args:
        target: RGB uint8 target image, or ``None`` for the standard reference.
        lambda_: L1 weight of the dictionary learning (Vahadane's lambda).
        Io: transmitted light intensity.
        beta: tissue threshold on the OD norm.
        n_dict_pixels: tissue pixels subsampled for the dictionary learning (speed; the
            6 numbers of a stain matrix need few pixels).
        max_pixels: tissue pixels subsampled for the concentration percentiles.
        min_tissue_pixels: fewest tissue pixels a fit needs.
        seed: seed of subsampling and dictionary learning.
    """

    def __init__(
        self,
        target: np.ndarray | None = None,
        lambda_: float = 0.1,
        Io: float = 255,
        beta: float = 0.15,
        *,
        n_dict_pixels: int = 2000,
        max_pixels: int = 1_000_000,
        min_tissue_pixels: int = 500,
        seed: int = 0,
    ) -> None:
        if lambda_ < 0 or Io <= 0 or beta < 0 or n_dict_pixels < 2:
            raise InputError(
                "Vahadane parameters",
                f"need lambda_ >= 0, Io > 0, beta >= 0, n_dict_pixels >= 2; got "
                f"lambda_={lambda_}, Io={Io}, beta={beta}, n_dict_pixels={n_dict_pixels}",
                "use the defaults lambda_=0.1, Io=255, beta=0.15",
            )
        self.lambda_ = float(lambda_)
        self.Io = float(Io)
        self.beta = float(beta)
        self.n_dict_pixels = int(n_dict_pixels)
        self.max_pixels = int(max_pixels)
        self.min_tissue_pixels = int(min_tissue_pixels)
        self.seed = int(seed)
        if target is None:
            self.target = VahadaneParams(
                stain_matrix=_matrix_tuple(_unit_rows(np.asarray(_TS_HEREF))),
                max_conc=_TS_MAXCREF,
                Io=self.Io,
                beta=self.beta,
                lambda_=self.lambda_,
                seed=self.seed,
                n_tiles=0,
                n_pixels=0,
                n_tissue_pixels=0,
            )
        else:
            self.target = self._fit([_check_tile(target, "target image")], "target image")

    def _od(self, pixels: np.ndarray) -> np.ndarray:
        """Optical density (float64, >= 0) of uint8 pixels (..., 3)."""
        return np.maximum(-np.log(np.maximum(pixels, 1) / self.Io), 0.0)

    def _fit(self, tiles: Iterable[np.ndarray], what: str) -> VahadaneParams:
        """Fit the stain matrix and max concentrations on the pooled tiles."""
        from sklearn.decomposition import DictionaryLearning  # lazy: slow import

        pixels, n_tiles, n_total = _pool_pixels(tiles, None, self.seed)
        od = self._od(pixels)
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
        dl = DictionaryLearning(
            n_components=2,
            alpha=self.lambda_,
            fit_algorithm="cd",
            transform_algorithm="lasso_cd",
            positive_code=True,
            positive_dict=True,
            max_iter=200,
            random_state=self.seed,
        )
        dl.fit(sample)
        w = np.asarray(dl.components_, dtype=np.float64)
        norms = np.linalg.norm(w, axis=1)
        cos = float(w[0] @ w[1] / (norms[0] * norms[1])) if np.all(norms > 1e-8) else 1.0
        if not np.all(np.isfinite(w)) or cos > math.cos(math.radians(2.0)):
            raise InputError(
                what,
                "the dictionary learning found fewer than two distinct stains "
                "(a stain is missing or the pixels are too uniform)",
                "fit on more, or more varied, H&E tissue tiles",
            )
        w = _order_he(_unit_rows(w))
        conc = _nnls2(tissue, w)
        max_c = np.percentile(conc, 99, axis=0)
        if not np.all(max_c > 0):
            raise InputError(
                what,
                "has a zero 99th-percentile concentration for a stain",
                "fit on H&E tissue tiles that show both stains",
            )
        return VahadaneParams(
            stain_matrix=_matrix_tuple(w),
            max_conc=(float(max_c[0]), float(max_c[1])),
            Io=self.Io,
            beta=self.beta,
            lambda_=self.lambda_,
            seed=self.seed,
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
        if not isinstance(params, VahadaneParams):
            raise InputError(
                "stain parameters",
                f"must be VahadaneParams, got {type(params).__name__}",
                "pass the result of VahadaneNormalizer.fit or VahadaneParams.from_dict",
            )
        if not math.isclose(params.Io, self.Io):
            raise InputError(
                "stain parameters",
                f"were fitted with Io={params.Io}, this normaliser uses Io={self.Io}",
                "create the normaliser with the same Io as the fit",
            )
        # float32 throughout; OD of the 256 possible values from a lookup table
        od_lut = self._od(np.arange(256)).astype(np.float32)
        conc = _nnls2(od_lut[pixels.reshape(-1, 3)], params.matrix)
        conc *= (np.asarray(self.target.max_conc) / np.asarray(params.max_conc)).astype(np.float32)
        out = conc @ (-self.target.matrix).astype(np.float32)
        np.exp(out, out=out)
        out *= np.float32(self.Io)
        np.rint(out, out=out)
        np.clip(out, 0, 255, out=out)
        return out.astype(np.uint8).reshape(pixels.shape)

    def transform(self, tile: np.ndarray, params: VahadaneParams) -> np.ndarray:
        """Normalise one tile (H x W x 3 uint8) with a slide's parameters."""
        return self._apply(_check_tile(tile), params)

    def transform_batch(self, tiles: np.ndarray, params: VahadaneParams) -> np.ndarray:
        """Normalise N x H x W x 3 uint8 tiles with a slide's parameters."""
        return self._apply(_check_batch(tiles), params)
