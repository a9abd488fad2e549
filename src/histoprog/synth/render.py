"""Assemble slide pixels from a class grid, streamed tile row by tile row, at any level.

Rendering is fast because textures are made once: a :class:`TextureBank` holds a few
large stain-free sheets per class (H/E concentrations at the slide's mpp). A
:class:`SlideRenderer` turns them into RGB with the slide's own stain, block-averages
them to every pyramid level, and fills each grid cell with a random crop of a random
sheet under a random flip/rotation. Crop offsets are multiples of the largest
downsample, so level ``k`` is exactly the ``2^k`` / ``4^k`` block mean of level 0 (before
JPEG) and no level is ever computed from a slide-sized array.

Geometry (:class:`SlideGeometry`): grid cell (r, c) covers level-0 pixels
``[r*cell_px, (r+1)*cell_px) x [c*cell_px, (c+1)*cell_px)``, ``cell_px`` = 224 at 0.5
mpp and 448 at 0.25 mpp (one 112 um tile). A partial strip of background
(``strip_px``, 100 px at 20x) follows the last row and column, so tilers must drop
partial tiles.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from histoprog.errors import InputError
from histoprog.sof import CLASSES
from histoprog.synth.seeding import rng_for
from histoprog.synth.stain import StainModel, od_to_rgb
from histoprog.synth.texture import render_background, render_texture

__all__ = [
    "CELL_UM",
    "SlideGeometry",
    "TextureBank",
    "SlideRenderer",
    "cell_px_for",
    "dihedral",
]

CELL_UM = 112.0
"""Side of one grid cell (one CRLM tile: 224 px at 0.5 mpp), in microns."""


def cell_px_for(mpp: float) -> int:
    """Level-0 pixels per grid cell at ``mpp`` (224 at 0.5, 448 at 0.25)."""
    px = CELL_UM / mpp
    if abs(px - round(px)) > 1e-6:
        raise InputError(
            "slide mpp",
            f"{mpp} does not give a whole number of pixels per 112 um grid cell",
            "use 0.5 (20x) or 0.25 (40x)",
        )
    return int(round(px))


@dataclass(frozen=True)
class SlideGeometry:
    """Level-0 size and pyramid of a synthetic slide.

    Attributes:
        rows: grid rows.
        cols: grid columns.
        cell_px: level-0 pixels per grid cell.
        strip_px: width of the partial background strip at the right and bottom.
        downsamples: integer downsample of each level (level 0 first, = 1).
    """

    rows: int
    cols: int
    cell_px: int
    strip_px: int
    downsamples: tuple[int, ...]

    def __post_init__(self) -> None:
        top = self.downsamples[-1]
        if self.downsamples[0] != 1 or self.cell_px % top:
            raise InputError(
                "slide pyramid",
                f"downsamples {self.downsamples} must start at 1 and divide the cell size "
                f"({self.cell_px} px)",
                "use 3 levels with factor 2 or 4 (or fewer levels)",
            )

    @property
    def size(self) -> tuple[int, int]:
        """Level-0 (width, height)."""
        return (
            self.cols * self.cell_px + self.strip_px,
            self.rows * self.cell_px + self.strip_px,
        )

    def level_size(self, level: int) -> tuple[int, int]:
        """(width, height) of a level: level-0 size floor-divided by its downsample."""
        w, h = self.size
        d = self.downsamples[level]
        return w // d, h // d

    @classmethod
    def make(
        cls, rows: int, cols: int, mpp: float, levels: int = 3, factor: int = 4
    ) -> SlideGeometry:
        """Geometry for a grid at ``mpp`` with ``levels`` levels of ratio ``factor``."""
        cell = cell_px_for(mpp)
        return cls(
            rows=rows,
            cols=cols,
            cell_px=cell,
            strip_px=int(round(100 * cell / 224)),
            downsamples=tuple(factor**k for k in range(levels)),
        )


def dihedral(a: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 flips/rotations of an image (k in 0..7), as the renderer applies them.

    Bit 4 transposes, bit 1 flips rows, bit 2 flips columns.
    """
    if k & 4:
        a = a.transpose(1, 0, *range(2, a.ndim))
    if k & 1:
        a = a[::-1]
    if k & 2:
        a = a[:, ::-1]
    return a


def _block_mean(a: np.ndarray, d: int) -> np.ndarray:
    """Mean over non-overlapping d x d blocks (shape divisible by d)."""
    if d == 1:
        return a
    h, w = a.shape[:2]
    return a.reshape(h // d, d, w // d, d, *a.shape[2:]).mean(axis=(1, 3))


@dataclass
class TextureBank:
    """Stain-free texture sheets per class, shared by the slides of a cohort.

    Attributes:
        mpp: microns per pixel of the sheets (the slides' level 0).
        sheet_px: side of each square sheet (twice the cell size).
        sheets: ``{class: [conc (S, S, 2) float16, ...]}`` for every tissue class.
        back: ``[rgb (S, S, 3) float32, ...]`` background sheets.
    """

    mpp: float
    sheet_px: int
    sheets: dict[str, list[np.ndarray]] = field(default_factory=dict)
    back: list[np.ndarray] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        mpp: float,
        seed: int,
        *,
        n_variants: int = 4,
        style: str = "crlm",
        classes: Sequence[str] = ("DEB", "HEP", "LYM", "MUC", "STR", "TUM"),
        atypia: float = 0.0,
    ) -> TextureBank:
        """Render ``n_variants`` sheets per class (and background) with a seeded stream."""
        side = 2 * cell_px_for(mpp)
        bank = cls(mpp=mpp, sheet_px=side)
        for name in classes:
            bank.sheets[name] = [
                render_texture(
                    name,
                    (side, side),
                    mpp,
                    rng_for(seed, "bank", name, style, side, v),
                    style=style,
                    atypia=atypia,
                ).conc.astype(np.float16)
                for v in range(n_variants)
            ]
        grey = float(rng_for(seed, "bank", "BACK").uniform(236.0, 246.0))
        bank.back = [
            render_background((side, side), rng_for(seed, "bank", "BACK", side, v), grey)
            for v in range(n_variants)
        ]
        return bank

    def with_sheets(self, name: str, sheets: list[np.ndarray]) -> TextureBank:
        """A copy whose class ``name`` uses ``sheets`` (e.g. a patient's own tumour)."""
        out = TextureBank(self.mpp, self.sheet_px, dict(self.sheets), list(self.back))
        out.sheets[name] = sheets
        return out


class SlideRenderer:
    """Pixels of one slide: grid + texture bank + stain, tile rows at any level.

    Args:
        grid: class grid (codes into :data:`histoprog.sof.CLASSES`; -1 is drawn as BACK).
        geometry: slide geometry (``rows``/``cols`` must match the grid).
        bank: texture sheets at the geometry's mpp.
        stain: the slide's stain.
        rng: the slide's generator for cell crops and orientations.
    """

    def __init__(
        self,
        grid: np.ndarray,
        geometry: SlideGeometry,
        bank: TextureBank,
        stain: StainModel,
        rng: np.random.Generator,
    ) -> None:
        if grid.shape != (geometry.rows, geometry.cols):
            raise ValueError(f"grid {grid.shape} does not match geometry")
        if bank.sheet_px < geometry.cell_px or bank.sheet_px % geometry.downsamples[-1]:
            raise ValueError("texture sheets do not fit the geometry")
        self.grid = np.where(grid < 0, 0, grid).astype(np.int8)
        self.geometry = geometry
        self.stain = stain
        n_var = len(bank.back)
        top = geometry.downsamples[-1]
        span = (bank.sheet_px - geometry.cell_px) // top + 1
        shape = self.grid.shape
        self.variant = rng.integers(0, n_var, size=shape)
        self.offset_y = rng.integers(0, span, size=shape) * top
        self.offset_x = rng.integers(0, span, size=shape) * top
        self.orient = rng.integers(0, 8, size=shape)
        self._sheets: dict[int, list[list[tuple[np.ndarray, np.ndarray]]]] = {}
        self._bank = bank
        self._row_cache: dict[tuple[int, int], np.ndarray] = {}

    @property
    def n_levels(self) -> int:
        """Number of pyramid levels."""
        return len(self.geometry.downsamples)

    def level_size(self, level: int) -> tuple[int, int]:
        """(width, height) of a level."""
        return self.geometry.level_size(level)

    def level_downsample(self, level: int) -> int:
        """Integer downsample of a level."""
        return self.geometry.downsamples[level]

    def _level_sheets(self, level: int) -> list[list[tuple[np.ndarray, np.ndarray]]]:
        """RGB uint8 sheets of every class at a level, each with its transpose.

        All levels are built on first use, one sheet at a time, so only one float sheet
        exists at once.
        """
        if not self._sheets:
            levels: list[list[list[tuple[np.ndarray, np.ndarray]]]] = [
                [] for _ in self.geometry.downsamples
            ]
            for name in CLASSES:
                per_level: list[list[tuple[np.ndarray, np.ndarray]]] = [
                    [] for _ in self.geometry.downsamples
                ]
                src = self._bank.back if name == "BACK" else self._bank.sheets[name]
                for sheet in src:
                    rgb = sheet if name == "BACK" else od_to_rgb(sheet, self.stain)
                    for k, d in enumerate(self.geometry.downsamples):
                        u8 = _to_u8(_block_mean(rgb, d))
                        per_level[k].append((u8, np.ascontiguousarray(u8.transpose(1, 0, 2))))
                for k in range(len(levels)):
                    levels[k].append(per_level[k])
            self._sheets = dict(enumerate(levels))
        return self._sheets[level]

    def _row(self, level: int, r: int) -> np.ndarray:
        """Pixels of grid row ``r`` at a level: (cell_k, cols * cell_k, 3) uint8."""
        key = (level, r)
        if key in self._row_cache:
            return self._row_cache[key]
        d = self.geometry.downsamples[level]
        ck = self.geometry.cell_px // d
        sheets = self._level_sheets(level)
        out = np.empty((ck, self.geometry.cols * ck, 3), np.uint8)
        for c in range(self.geometry.cols):
            sheet, sheet_t = sheets[self.grid[r, c]][self.variant[r, c]]
            oy, ox = self.offset_y[r, c] // d, self.offset_x[r, c] // d
            k = int(self.orient[r, c])
            # Orientation k = transpose (k & 4) then flips (k & 1: rows, k & 2: columns);
            # the transpose is precomputed so every crop is a cheap strided view.
            src = (
                sheet_t[ox : ox + ck, oy : oy + ck] if k & 4 else sheet[oy : oy + ck, ox : ox + ck]
            )
            if k & 1:
                src = src[::-1]
            if k & 2:
                src = src[:, ::-1]
            out[:, c * ck : (c + 1) * ck] = src
        if len(self._row_cache) >= 2:
            self._row_cache.pop(next(iter(self._row_cache)))
        self._row_cache[key] = out
        return out

    def _fill_back(self, out: np.ndarray, level: int, y0: int, x0: int) -> None:
        """Fill ``out`` (h, w, 3) with background, continuing a tiled sheet at (y0, x0)."""
        if out.size == 0:
            return
        sheet = self._level_sheets(level)[0][0][0]
        s = sheet.shape[0]
        h, w = out.shape[:2]
        oy, ox = y0 % s, x0 % s
        reps = (-(-(oy + h) // s), -(-(ox + w) // s), 1)
        out[:] = np.tile(sheet, reps)[oy : oy + h, ox : ox + w]

    def region(self, level: int, y0: int, height: int, width: int) -> np.ndarray:
        """Rows ``[y0, y0 + height)`` of a level, columns ``[0, width)`` (padded with BACK).

        Args:
            level: pyramid level.
            y0: first row (level pixels).
            height: number of rows.
            width: number of columns (at least the grid's width at that level).

        Returns:
            ``(height, width, 3)`` uint8 array.
        """
        g = self.geometry
        ck = g.cell_px // g.downsamples[level]
        gw = g.cols * ck
        out = np.empty((height, width, 3), np.uint8)
        self._fill_back(out[:, gw:], level, y0, gw)
        y = y0
        while y < y0 + height:
            r = y // ck
            y_end = min(y0 + height, (r + 1) * ck)
            if r < g.rows:
                out[y - y0 : y_end - y0, :gw] = self._row(level, r)[y - r * ck : y_end - r * ck]
            else:
                self._fill_back(out[y - y0 : y_end - y0, :gw], level, y, 0)
            y = y_end
        return out

    def iter_tiles(self, level: int, tile: int) -> Iterator[np.ndarray]:
        """Tiles of a level in row-major order, each ``(tile, tile, 3)`` (edges padded)."""
        w, h = self.geometry.level_size(level)
        ntx, nty = math.ceil(w / tile), math.ceil(h / tile)
        for ty in range(nty):
            band = self.region(level, ty * tile, tile, ntx * tile)
            for tx in range(ntx):
                yield np.ascontiguousarray(band[:, tx * tile : (tx + 1) * tile])
        self._row_cache.clear()

    def level_image(self, level: int) -> np.ndarray:
        """A whole level as one array (tests and small slides only)."""
        w, h = self.geometry.level_size(level)
        return self.region(level, 0, h, w)


def _to_u8(a: np.ndarray) -> np.ndarray:
    """Round float RGB to uint8."""
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def class_colour_stats(renderer: SlideRenderer, level: int = 0) -> Mapping[str, np.ndarray]:
    """Mean RGB of each class's sheets at a level (for tests and QC)."""
    sheets = renderer._level_sheets(level)
    return {
        name: np.mean([s.reshape(-1, 3).mean(0) for s, _ in sheets[i]], axis=0)
        for i, name in enumerate(CLASSES)
    }
