"""Nuclei as (irregular) ellipses: hematoxylin density, coverage and a binary mask.

A nucleus is an ellipse with semi-axes ``a`` (along ``angle``) and ``b``, whose outline
is modulated by two random harmonics (``irregularity`` = their amplitude, 0 = a clean
ellipse). Its hematoxylin density is ``intensity`` times a chromatin texture, optionally
"vesicular" (dark rim, pale centre, a nucleolus). Edges are anti-aliased in the density
map; the mask is the hard inside test, so mask and image agree to a pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Nuclei", "jittered_lattice", "draw_nuclei"]


@dataclass
class Nuclei:
    """A set of nuclei in pixel units (row, column order for centres).

    Attributes:
        centres: ``(n, 2)`` centres (y, x).
        axes: ``(n, 2)`` semi-axes (a along the angle, b across).
        angles: ``(n,)`` orientation of the a axis (radians, from the x axis).
        irregularity: ``(n,)`` outline irregularity (0-0.5).
        intensity: ``(n,)`` peak hematoxylin concentration.
        vesicular: ``(n,)`` 0 = solid chromatin, 1 = dark rim with pale centre and nucleolus.
    """

    centres: np.ndarray
    axes: np.ndarray
    angles: np.ndarray
    irregularity: np.ndarray
    intensity: np.ndarray
    vesicular: np.ndarray

    def __len__(self) -> int:
        return int(self.centres.shape[0])

    @classmethod
    def concat(cls, parts: list[Nuclei]) -> Nuclei:
        """Concatenate several sets."""
        fields = ("centres", "axes", "angles", "irregularity", "intensity", "vesicular")
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in fields))

    @classmethod
    def make(
        cls,
        centres: np.ndarray,
        a: np.ndarray | float,
        b: np.ndarray | float,
        angles: np.ndarray | float,
        irregularity: np.ndarray | float,
        intensity: np.ndarray | float,
        vesicular: np.ndarray | float = 0.0,
    ) -> Nuclei:
        """Build a set, broadcasting scalars to the number of centres."""
        n = centres.shape[0]

        def full(v: np.ndarray | float) -> np.ndarray:
            return np.broadcast_to(np.asarray(v, dtype=np.float32), (n,)).copy()

        return cls(
            centres=np.asarray(centres, dtype=np.float32).reshape(n, 2),
            axes=np.stack([full(a), full(b)], axis=1),
            angles=full(angles),
            irregularity=full(irregularity),
            intensity=full(intensity),
            vesicular=full(vesicular),
        )


def jittered_lattice(
    shape: tuple[int, int], spacing: float, jitter: float, rng: np.random.Generator
) -> np.ndarray:
    """Points on a hexagonal lattice with random jitter, covering ``shape``.

    Args:
        shape: (height, width) in pixels.
        spacing: lattice spacing in pixels.
        jitter: displacement standard deviation as a fraction of ``spacing``.
        rng: generator.

    Returns:
        ``(n, 2)`` float array of (y, x) points inside the shape.
    """
    dy = spacing * np.sqrt(3) / 2
    ys = np.arange(-dy, shape[0] + dy, dy)
    xs = np.arange(-spacing, shape[1] + spacing, spacing)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    xx = xx + (np.arange(ys.size)[:, None] % 2) * spacing / 2
    pts = np.stack([yy.ravel(), xx.ravel()], axis=1)
    pts += rng.normal(0.0, jitter * spacing, size=pts.shape)
    inside = (pts[:, 0] >= 0) & (pts[:, 0] < shape[0]) & (pts[:, 1] >= 0) & (pts[:, 1] < shape[1])
    return pts[inside]


def draw_nuclei(
    h: np.ndarray,
    nuclei: Nuclei,
    rng: np.random.Generator,
    cover: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    chromatin: np.ndarray | None = None,
) -> None:
    """Paint nuclei into a hematoxylin map in place (maximum where they overlap).

    Args:
        h: ``(H, W)`` float32 hematoxylin concentration map, updated in place.
        nuclei: the nuclei to draw.
        rng: generator for the outline harmonics.
        cover: optional ``(H, W)`` float32 map updated with the anti-aliased coverage
            (0-1), used to thin the eosin under nuclei.
        mask: optional ``(H, W)`` bool map, set True inside every nucleus.
        chromatin: optional ``(H, W)`` multiplicative texture (around 1) of the density.
    """
    height, width = h.shape
    n = len(nuclei)
    phases = rng.uniform(0.0, 2 * np.pi, size=(n, 2))
    weights = rng.uniform(0.4, 1.0, size=(n, 2))
    nucleolus = rng.normal(0.0, 0.25, size=(n, 2))
    for i in range(n):
        cy, cx = nuclei.centres[i]
        a, b = nuclei.axes[i]
        irr = float(nuclei.irregularity[i])
        rad = max(a, b) * (1.0 + irr) + 1.5
        y0, y1 = max(int(cy - rad), 0), min(int(cy + rad) + 2, height)
        x0, x1 = max(int(cx - rad), 0), min(int(cx + rad) + 2, width)
        if y0 >= y1 or x0 >= x1:
            continue
        yy = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5 - cy
        xx = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5 - cx
        ca, sa = np.cos(nuclei.angles[i]), np.sin(nuclei.angles[i])
        u = (xx * ca + yy * sa) / a
        v = (-xx * sa + yy * ca) / b
        rho = np.sqrt(u * u + v * v)
        if irr > 0:
            theta = np.arctan2(v, u)
            limit = 1.0 + irr * (
                weights[i, 0] * np.cos(2 * theta + phases[i, 0])
                + weights[i, 1] * 0.6 * np.cos(3 * theta + phases[i, 1])
            )
        else:
            limit = np.float32(1.0)
        edge = (limit - rho) * min(a, b)  # signed distance to the outline, about in px
        alpha = np.clip(edge + 0.5, 0.0, 1.0)
        if not alpha.any():
            continue
        val = nuclei.intensity[i] * alpha
        ves = float(nuclei.vesicular[i])
        if ves > 0:
            r = np.clip(rho / limit, 0.0, 1.0)
            profile = 1.0 - ves * 0.55 * (1.0 - r**4)
            dn = np.hypot(u - nucleolus[i, 0], v - nucleolus[i, 1])
            profile = np.maximum(profile, np.where(dn < 0.22, 1.0, 0.0))
            val = val * profile
        if chromatin is not None:
            val = val * chromatin[y0:y1, x0:x1]
        sub = h[y0:y1, x0:x1]
        np.maximum(sub, val.astype(np.float32, copy=False), out=sub)
        if cover is not None:
            csub = cover[y0:y1, x0:x1]
            np.maximum(csub, alpha.astype(np.float32, copy=False), out=csub)
        if mask is not None:
            mask[y0:y1, x0:x1] |= edge > 0
