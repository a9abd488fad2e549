"""Per-class tissue textures as hematoxylin/eosin concentration maps (physical units).

Every recipe is written in microns and rendered at a given mpp, so a 40x (0.25 mpp) slide
shows the same tissue as a 20x one at twice the detail. The classes differ the way a
pathologist sees them, which a small CNN learns easily but not from colour alone:

* TUM (CRLM): glands with clear lumens lined by crowded, elongated, radially oriented
  nuclei; solid areas of large pleomorphic nuclei. TUM (HCC, ``style="hcc"``): thick
  trabeculae of crowded hepatoid cells whose nuclear density, size, irregularity and
  hyperchromasia grow with ``atypia`` (0-1).
* STR: wavy eosinophilic fibres with sparse thin spindle nuclei along them.
* LYM: densely packed small round very dark nuclei, little cytoplasm.
* HEP: plates of polygonal pink granular cells with round vesicular nuclei and pale
  sinusoids between the plates.
* MUC: pale bluish wisps of mucin with a few floating cells.
* DEB: mottled pink necrosis with fragmented dark nuclear debris and ghost nuclei.
* CRC-only (patch sets): ADI (empty fat cells with thin membranes), MUS (dense straight
  smooth-muscle fibres with blunt cigar-shaped nuclei), NORM (regular crypts with goblet
  cells and small basal nuclei in a cellular lamina propria).

BACK is not stained tissue; :func:`render_background` makes it directly in RGB (bright,
unsaturated, with light noise: HSV saturation < 0.07 and value > 0.85).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from histoprog.synth.nuclei import Nuclei, draw_nuclei, jittered_lattice

__all__ = [
    "TISSUE_TEXTURES",
    "Texture",
    "render_texture",
    "render_background",
]


@dataclass
class Texture:
    """A rendered texture.

    Attributes:
        conc: ``(H, W, 2)`` float32 hematoxylin and eosin concentrations (OD units).
        nuclei: ``(H, W)`` bool mask of the nuclei drawn (debris fragments excluded).
    """

    conc: np.ndarray
    nuclei: np.ndarray


_H_GAIN = np.float32(0.75)
_E_GAIN = np.float32(0.6)
# Recipes are written on a convenient scale; these gains bring the optical densities to
# those of real H&E (e.g. stroma around RGB 220/140/180 with the reference stain).


class _Canvas:
    """Working maps of one texture: H, E, nucleus coverage and mask, in pixel units."""

    def __init__(self, shape: tuple[int, int], mpp: float, rng: np.random.Generator) -> None:
        self.shape = shape
        self.px = 1.0 / mpp  # pixels per micron
        self.rng = rng
        self.h = np.zeros(shape, np.float32)
        self.e = np.zeros(shape, np.float32)
        self.cover = np.zeros(shape, np.float32)
        self.mask = np.zeros(shape, bool)
        self.nuc_h = np.zeros(shape, np.float32)

    def um(self, value: float | np.ndarray) -> np.ndarray:
        """Microns -> pixels."""
        return np.asarray(value, dtype=np.float32) * np.float32(self.px)

    def noise(self, scale_um: float) -> np.ndarray:
        """Isotropic smooth noise (unit s.d.) with correlation length ``scale_um``."""
        return _fft_noise(self.shape, self.um(scale_um), self.um(scale_um), 0.0, self.rng)

    def fibres(
        self, angle: float, along_um: float, across_um: float, wave_um: float = 6.0
    ) -> np.ndarray:
        """Oriented noise: streaks along ``angle`` (radians), made wavy by a smooth warp.

        The streaks are made axis-aligned on a larger periodic canvas and sampled through a
        rotation, so any angle is free of the staircase a periodic oblique filter makes.
        """
        side = int(np.hypot(*self.shape)) + 8
        field = _fft_noise((side, side), self.um(along_um), self.um(across_um), 0.0, self.rng)
        yy, xx = np.mgrid[0 : self.shape[0], 0 : self.shape[1]].astype(np.float32)
        yy -= self.shape[0] / 2
        xx -= self.shape[1] / 2
        if wave_um > 0:
            scale = min(4.0 * along_um, 40.0)
            yy += self.um(wave_um) * self.noise(scale)
            xx += self.um(wave_um) * self.noise(scale)
        ca, sa = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        u = xx * ca + yy * sa + side / 2
        v = -xx * sa + yy * ca + side / 2
        return ndimage.map_coordinates(field, [v, u], order=1, mode="grid-wrap")

    def uniform_points(self, per_um2: float) -> np.ndarray:
        """Poisson points with a density per square micron."""
        area = self.shape[0] * self.shape[1] / self.px**2
        n = int(self.rng.poisson(per_um2 * area))
        return self.rng.uniform((0, 0), self.shape, size=(n, 2)).astype(np.float32)

    def lattice(self, spacing_um: float, jitter: float, keep: float = 1.0) -> np.ndarray:
        """Jittered hexagonal lattice points, each kept with probability ``keep``."""
        pts = jittered_lattice(self.shape, float(self.um(spacing_um)), jitter, self.rng)
        return pts[self.rng.random(pts.shape[0]) < keep]

    def nuclei(self, nuc: Nuclei, *, in_mask: bool = True, chromatin: float = 0.15) -> None:
        """Draw nuclei (into the nucleus mask unless ``in_mask`` is False)."""
        if len(nuc) == 0:
            return
        tex = 1.0 + chromatin * self.noise(0.8)
        draw_nuclei(
            self.nuc_h,
            nuc,
            self.rng,
            cover=self.cover,
            mask=self.mask if in_mask else None,
            chromatin=tex,
        )

    def finish(self, blur_um: float = 0.3) -> Texture:
        """Combine the maps (nuclei displace cytoplasm), blur slightly, clip at 0."""
        e = self.e * (1.0 - 0.6 * self.cover) * _E_GAIN
        h = (np.maximum(self.h * (1.0 - self.cover), 0) + self.nuc_h) * _H_GAIN
        conc = np.stack([h, e], axis=-1)
        sigma = float(self.um(blur_um))
        if sigma > 0.2:
            conc = ndimage.gaussian_filter(conc, (sigma, sigma, 0), mode="wrap")
        return Texture(np.clip(conc, 0.0, None).astype(np.float32), self.mask)


def _fft_noise(
    shape: tuple[int, int],
    along: float,
    across: float,
    angle: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Periodic Gaussian-filtered white noise, normalised to unit s.d.

    ``along``/``across`` are the filter's standard deviations (pixels) along and across
    the direction ``angle``; equal values give isotropic noise.
    """
    white = rng.standard_normal(shape)  # float64: float32 FFTs of very smooth fields band
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    ca, sa = np.cos(angle), np.sin(angle)
    k_along = fx * ca + fy * sa
    k_across = -fx * sa + fy * ca
    gain = np.exp(-2 * np.pi**2 * ((along * k_along) ** 2 + (across * k_across) ** 2))
    field = np.fft.irfft2(np.fft.rfft2(white) * gain, s=shape).astype(np.float32)
    sd = float(field.std())
    return field / sd if sd > 0 else field


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function."""
    return 1.0 / (1.0 + np.exp(-x))


def _voronoi_edges(
    shape: tuple[int, int], seeds: np.ndarray, width_px: float
) -> tuple[np.ndarray, np.ndarray]:
    """Cell labels and a boundary mask of the Voronoi tessellation of ``seeds``."""
    lab = np.zeros(shape, np.int32)
    ij = np.clip(seeds.astype(int), 0, np.array(shape) - 1)
    lab[ij[:, 0], ij[:, 1]] = np.arange(1, ij.shape[0] + 1)
    if ij.shape[0] == 0:
        return lab, np.zeros(shape, bool)
    _, (iy, ix) = ndimage.distance_transform_edt(lab == 0, return_indices=True)
    lab = lab[iy, ix]
    edge = np.zeros(shape, bool)
    edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    edge[1:, :] |= lab[1:, :] != lab[:-1, :]
    if width_px > 1.5:
        edge = ndimage.binary_dilation(edge, iterations=int(round(width_px / 2)))
    return lab, edge


def _lognormal(rng: np.random.Generator, sd: float, n: int) -> np.ndarray:
    """Multiplicative jitter with median 1."""
    return np.exp(rng.normal(0.0, sd, n)).astype(np.float32)


def _tum_gland(c: _Canvas, atypia: float) -> None:
    """Colorectal adenocarcinoma: glands with lumens, crowded elongated nuclei."""
    rng = c.rng
    c.e += 0.42 + 0.08 * c.noise(8.0)
    c.h += 0.16 + 0.05 * c.noise(6.0)
    glands = c.lattice(rng.uniform(55.0, 70.0), 0.22, keep=0.85)
    yy, xx = np.mgrid[0 : c.shape[0], 0 : c.shape[1]].astype(np.float32)
    lumen = np.zeros(c.shape, np.float32)
    epi = np.zeros(c.shape, bool)
    ring_nuc = []
    for gy, gx in glands:
        rl = float(c.um(rng.uniform(5.0, 15.0)))
        ell = rng.uniform(0.6, 1.0)
        ang = rng.uniform(0, np.pi)
        rad = rl * 2.2 + c.um(10.0)
        y0, y1 = int(max(gy - rad, 0)), int(min(gy + rad + 1, c.shape[0]))
        x0, x1 = int(max(gx - rad, 0)), int(min(gx + rad + 1, c.shape[1]))
        if y0 >= y1 or x0 >= x1:
            continue
        dy, dx = yy[y0:y1, x0:x1] - gy, xx[y0:y1, x0:x1] - gx
        u = (dx * np.cos(ang) + dy * np.sin(ang)) / rl
        v = (-dx * np.sin(ang) + dy * np.cos(ang)) / (rl * ell)
        r = np.sqrt(u * u + v * v)
        lumen[y0:y1, x0:x1] = np.maximum(lumen[y0:y1, x0:x1], np.clip((1.15 - r) * 4, 0, 1))
        ring_r = 1.0 + float(c.um(6.0)) / rl
        epi[y0:y1, x0:x1] |= r < ring_r + float(c.um(6.0)) / rl
        n_ring = max(int(2 * np.pi * rl * ring_r / float(c.um(4.2))), 6)
        t = np.linspace(0, 2 * np.pi, n_ring, endpoint=False) + rng.uniform(0, 1)
        rr = rl * (ring_r + rng.normal(0, 0.25, n_ring) * float(c.um(2.5)) / rl)
        uy = rr * np.sin(t) * ell
        ux = rr * np.cos(t)
        py = gy + ux * np.sin(ang) + uy * np.cos(ang)
        pxs = gx + ux * np.cos(ang) - uy * np.sin(ang)
        pts = np.stack([py, pxs], axis=1)
        ring_nuc.append(
            Nuclei.make(
                pts,
                c.um(rng.uniform(5.5, 8.0, n_ring) * (1 + 0.2 * atypia)),
                c.um(rng.uniform(2.2, 3.2, n_ring) * (1 + 0.2 * atypia)),
                np.arctan2(py - gy, pxs - gx),
                0.12 + 0.15 * atypia,
                rng.uniform(0.9, 1.3, n_ring),
            )
        )
    c.e *= 1.0 - 0.88 * lumen
    c.h *= 1.0 - 0.85 * lumen
    # Solid tumour between glands: large pleomorphic nuclei.
    pts = c.lattice(12.0, 0.3, keep=0.75)
    ij = pts.astype(int)
    pts = pts[~epi[ij[:, 0], ij[:, 1]]]
    n = pts.shape[0]
    a = rng.uniform(4.0, 6.5, n) * (1 + 0.25 * atypia)
    solid = Nuclei.make(
        pts,
        c.um(a),
        c.um(a * rng.uniform(0.6, 0.9, n)),
        rng.uniform(0, np.pi, n),
        0.2 + 0.15 * atypia,
        rng.uniform(0.85, 1.2, n),
        rng.uniform(0.0, 0.4, n),
    )
    c.nuclei(Nuclei.concat([*ring_nuc, solid]) if ring_nuc else solid)


def _plates(c: _Canvas, period_um: float, sinusoid_um: float) -> tuple[np.ndarray, float]:
    """Sinusoid mask of parallel, wavy cell plates; returns (mask, plate angle)."""
    angle = float(c.rng.uniform(0, np.pi))
    yy, xx = np.mgrid[0 : c.shape[0], 0 : c.shape[1]].astype(np.float32)
    s = yy * np.cos(angle) - xx * np.sin(angle)
    s = s + c.um(period_um * 0.3) * c.noise(period_um * 2.0)
    phase = np.mod(s / c.um(period_um), 1.0)
    return phase < sinusoid_um / period_um, angle


def _hep(c: _Canvas) -> None:
    """Hepatocyte plates with round vesicular nuclei and pale sinusoids."""
    rng = c.rng
    sinus, angle = _plates(c, rng.uniform(30.0, 36.0), 5.0)
    seeds = c.lattice(22.0, 0.18)
    ij = seeds.astype(int)
    seeds = seeds[~sinus[ij[:, 0], ij[:, 1]]]
    _, membranes = _voronoi_edges(c.shape, seeds, float(c.um(1.0)))
    c.e += 0.55 + 0.09 * c.noise(1.2) + 0.05 * c.noise(30.0)
    c.e -= 0.12 * membranes
    c.h += 0.07 + 0.02 * c.noise(5.0)
    c.e[sinus] = 0.16
    c.h[sinus] = 0.05
    n = seeds.shape[0]
    r = rng.uniform(3.4, 4.4, n)
    parts = [
        Nuclei.make(
            seeds,
            c.um(r),
            c.um(r * rng.uniform(0.85, 1.0, n)),
            rng.uniform(0, np.pi, n),
            0.04,
            rng.uniform(0.72, 0.92, n),
            0.85,
        )
    ]
    bi = rng.random(n) < 0.08  # binucleate hepatocytes
    if bi.any():
        off = np.stack([np.sin(angle), np.cos(angle)]) * c.um(2.3) * r[bi][:, None]
        parts.append(
            Nuclei.make(
                seeds[bi] + off.astype(np.float32),
                c.um(r[bi]),
                c.um(r[bi] * 0.9),
                0.0,
                0.04,
                0.8,
                0.85,
            )
        )
    # Flat endothelial / Kupffer nuclei in the sinusoids.
    endo = c.uniform_points(1 / 1500)
    ij = endo.astype(int)
    endo = endo[sinus[ij[:, 0], ij[:, 1]]]
    m = endo.shape[0]
    parts.append(Nuclei.make(endo, c.um(rng.uniform(4.0, 6.0, m)), c.um(1.3), angle, 0.05, 1.0))
    c.nuclei(Nuclei.concat(parts))


def _tum_hcc(c: _Canvas, atypia: float) -> None:
    """Hepatocellular carcinoma: thick trabeculae; nuclear atypia grows with ``atypia``."""
    rng = c.rng
    a = float(np.clip(atypia, 0.0, 1.0))
    sinus, _ = _plates(c, rng.uniform(45.0, 70.0), 6.0)
    spacing = 19.0 / np.sqrt(1.0 + 1.0 * a)
    seeds = c.lattice(spacing, 0.2)
    ij = seeds.astype(int)
    seeds = seeds[~sinus[ij[:, 0], ij[:, 1]]]
    _, membranes = _voronoi_edges(c.shape, seeds, float(c.um(0.8)))
    c.e += 0.46 + 0.07 * c.noise(1.5) + 0.05 * c.noise(25.0)
    c.e -= 0.1 * membranes
    c.h += 0.12 + 0.06 * a + 0.03 * c.noise(5.0)
    c.e[sinus] = 0.16
    c.h[sinus] = 0.05
    n = seeds.shape[0]
    r = 4.2 * (1.0 + 0.5 * a) * _lognormal(rng, 0.08 + 0.17 * a, n)
    c.nuclei(
        Nuclei.make(
            seeds,
            c.um(r),
            c.um(r * rng.uniform(0.8 - 0.25 * a, 1.0, n)),
            rng.uniform(0, np.pi, n),
            0.05 + 0.3 * a,
            (0.85 + 0.6 * a) * rng.uniform(0.9, 1.1, n),
            0.75 * (1.0 - a),
        ),
        chromatin=0.15 + 0.15 * a,
    )


def _str(c: _Canvas) -> None:
    """Stroma: wavy collagen fibres with sparse aligned spindle nuclei."""
    rng = c.rng
    angle = float(rng.uniform(0, np.pi))
    fib = c.fibres(angle, 25.0, 1.5)
    c.e += 0.36 + 0.44 * _sigmoid(2.5 * fib) + 0.06 * c.noise(20.0)
    c.h += 0.05 + 0.02 * c.noise(10.0)
    pts = c.uniform_points(1 / 450)
    n = pts.shape[0]
    c.nuclei(
        Nuclei.make(
            pts,
            c.um(rng.uniform(6.0, 9.0, n)),
            c.um(rng.uniform(1.2, 1.8, n)),
            angle + rng.normal(0, 0.15, n),
            0.05,
            rng.uniform(0.8, 1.1, n),
        )
    )


def _mus(c: _Canvas) -> None:
    """Smooth muscle: dense straight eosinophilic fibres, blunt cigar-shaped nuclei."""
    rng = c.rng
    angle = float(rng.uniform(0, np.pi))
    fib = c.fibres(angle, 60.0, 3.0)
    c.e += 0.72 + 0.2 * _sigmoid(2.0 * fib) + 0.05 * c.noise(15.0)
    c.h += 0.1 + 0.02 * c.noise(8.0)
    pts = c.uniform_points(1 / 260)
    n = pts.shape[0]
    c.nuclei(
        Nuclei.make(
            pts,
            c.um(rng.uniform(8.0, 12.0, n)),
            c.um(rng.uniform(1.6, 2.2, n)),
            angle + rng.normal(0, 0.08, n),
            0.03,
            rng.uniform(0.75, 0.95, n),
        )
    )


def _lym(c: _Canvas) -> None:
    """Lymphocytes: densely packed small round dark nuclei."""
    rng = c.rng
    c.e += 0.18 + 0.04 * c.noise(10.0)
    c.h += 0.12 + 0.03 * c.noise(6.0)
    pts = c.lattice(8.5, 0.15, keep=0.88)
    n = pts.shape[0]
    r = rng.uniform(3.0, 3.8, n)
    big = rng.random(n) < 0.05  # a few plasma cells / histiocytes
    r[big] = 4.6
    c.nuclei(
        Nuclei.make(
            pts,
            c.um(r),
            c.um(r * rng.uniform(0.85, 1.0, n)),
            rng.uniform(0, np.pi, n),
            0.06,
            np.where(big, 0.9, rng.uniform(1.4, 1.8, n)),
            np.where(big, 0.5, 0.0),
        ),
        chromatin=0.08,
    )


def _muc(c: _Canvas) -> None:
    """Mucin: pale bluish wisps with a few floating cells."""
    rng = c.rng
    wisps = _sigmoid(2.0 * c.fibres(float(rng.uniform(0, np.pi)), 20.0, 4.0, wave_um=15.0))
    c.e += np.clip(0.06 + 0.06 * wisps + 0.02 * c.noise(30.0), 0.02, None)
    c.h += np.clip(0.08 + 0.06 * wisps + 0.02 * c.noise(20.0), 0.02, None)
    pts = c.uniform_points(1 / 4000)
    n = pts.shape[0]
    c.nuclei(
        Nuclei.make(
            pts,
            c.um(rng.uniform(3.0, 4.5, n)),
            c.um(rng.uniform(1.5, 2.5, n)),
            rng.uniform(0, np.pi, n),
            0.2,
            rng.uniform(0.8, 1.1, n),
        )
    )


def _deb(c: _Canvas) -> None:
    """Necrotic debris: mottled pink ground, fragmented nuclear dust, ghost nuclei."""
    rng = c.rng
    c.e += 0.55 + 0.15 * c.noise(12.0) + 0.08 * c.noise(3.0)
    c.h += np.clip(0.22 + 0.12 * c.noise(8.0), 0.05, None)
    ghosts = c.lattice(14.0, 0.3, keep=0.5)
    n = ghosts.shape[0]
    c.nuclei(
        Nuclei.make(ghosts, c.um(4.0), c.um(3.4), rng.uniform(0, np.pi, n), 0.2, 0.3, 0.9),
        in_mask=False,
    )
    centres = c.uniform_points(1 / 800)
    counts = rng.integers(4, 16, centres.shape[0])
    pts = np.repeat(centres, counts, axis=0)
    pts += rng.normal(0, float(c.um(5.0)), pts.shape).astype(np.float32)
    pts = np.concatenate([pts, c.uniform_points(1 / 120)])
    m = pts.shape[0]
    r = rng.uniform(0.6, 2.2, m)
    c.nuclei(
        Nuclei.make(
            pts,
            c.um(r),
            c.um(r * rng.uniform(0.5, 1.0, m)),
            rng.uniform(0, np.pi, m),
            0.4,
            rng.uniform(1.1, 1.7, m),
        ),
        in_mask=False,
    )


def _adi(c: _Canvas) -> None:
    """Adipose tissue: empty fat cells with thin membranes."""
    rng = c.rng
    seeds = c.lattice(rng.uniform(60.0, 80.0), 0.25)
    _, edge = _voronoi_edges(c.shape, seeds, float(c.um(1.5)))
    c.e += 0.015 + 0.33 * edge * (1 + 0.2 * c.noise(10.0))
    c.h += 0.01 + 0.04 * edge
    pts = c.uniform_points(1 / 8000)
    ij = pts.astype(int)
    pts = pts[edge[ij[:, 0], ij[:, 1]]]
    n = pts.shape[0]
    c.nuclei(Nuclei.make(pts, c.um(6.0), c.um(1.5), rng.uniform(0, np.pi, n), 0.05, 0.9))


def _norm(c: _Canvas) -> None:
    """Normal colonic mucosa: regular crypts with goblet cells, cellular lamina propria."""
    rng = c.rng
    c.e += 0.36 + 0.05 * c.noise(10.0)
    c.h += 0.1 + 0.03 * c.noise(6.0)
    crypts = c.lattice(rng.uniform(65.0, 75.0), 0.1)
    yy, xx = np.mgrid[0 : c.shape[0], 0 : c.shape[1]].astype(np.float32)
    in_crypt = np.zeros(c.shape, bool)
    parts = []
    for gy, gx in crypts:
        rc = float(c.um(rng.uniform(22.0, 28.0)))
        y0, y1 = int(max(gy - rc - 2, 0)), int(min(gy + rc + 3, c.shape[0]))
        x0, x1 = int(max(gx - rc - 2, 0)), int(min(gx + rc + 3, c.shape[1]))
        if y0 >= y1 or x0 >= x1:
            continue
        d = np.hypot(yy[y0:y1, x0:x1] - gy, xx[y0:y1, x0:x1] - gx)
        inside = d < rc
        in_crypt[y0:y1, x0:x1] |= inside
        sub_e, sub_h = c.e[y0:y1, x0:x1], c.h[y0:y1, x0:x1]
        sub_e[inside] = 0.22
        sub_h[inside] = 0.1
        lum = d < c.um(5.0)
        sub_e[lum] = 0.04
        sub_h[lum] = 0.03
        # Goblet vacuoles: pale bluish circles in the epithelium.
        n_g = max(int(2 * np.pi * rc * 0.6 / float(c.um(7.0))), 4)
        t = np.linspace(0, 2 * np.pi, n_g, endpoint=False) + rng.uniform(0, 1)
        for ti in t:
            vy, vx = gy + 0.6 * rc * np.sin(ti), gx + 0.6 * rc * np.cos(ti)
            v = np.hypot(yy[y0:y1, x0:x1] - vy, xx[y0:y1, x0:x1] - vx) < c.um(4.2)
            sub_e[v] = 0.06
            sub_h[v] = 0.12
        n_b = max(int(2 * np.pi * rc * 0.88 / float(c.um(5.5))), 6)
        t = np.linspace(0, 2 * np.pi, n_b, endpoint=False) + rng.uniform(0, 1)
        pts = np.stack([gy + 0.88 * rc * np.sin(t), gx + 0.88 * rc * np.cos(t)], axis=1)
        parts.append(Nuclei.make(pts, c.um(3.0), c.um(2.0), t, 0.05, 1.2))
    lp = c.lattice(12.0, 0.35, keep=0.7)
    ij = lp.astype(int)
    lp = lp[~in_crypt[ij[:, 0], ij[:, 1]]]
    n = lp.shape[0]
    r = rng.uniform(2.8, 3.6, n)
    parts.append(
        Nuclei.make(
            lp, c.um(r), c.um(r * 0.85), rng.uniform(0, np.pi, n), 0.08, rng.uniform(1.2, 1.6, n)
        )
    )
    c.nuclei(Nuclei.concat(parts))


_RECIPES: dict[str, Callable[[_Canvas], None]] = {
    "DEB": _deb,
    "HEP": _hep,
    "LYM": _lym,
    "MUC": _muc,
    "STR": _str,
    "ADI": _adi,
    "MUS": _mus,
    "NORM": _norm,
}

TISSUE_TEXTURES: tuple[str, ...] = ("ADI", "DEB", "HEP", "LYM", "MUC", "MUS", "NORM", "STR", "TUM")
"""Every stained texture :func:`render_texture` knows (BACK is :func:`render_background`)."""


def render_texture(
    name: str,
    shape: tuple[int, int],
    mpp: float,
    rng: np.random.Generator,
    *,
    style: str = "crlm",
    atypia: float = 0.0,
) -> Texture:
    """Render one class texture.

    Args:
        name: a class in :data:`TISSUE_TEXTURES`.
        shape: (height, width) in pixels.
        mpp: microns per pixel of the rendering.
        rng: generator (the texture is a pure function of its state).
        style: tumour style, ``crlm`` (glandular adenocarcinoma) or ``hcc`` (trabecular).
        atypia: nuclear atypia of the tumour, 0-1.

    Returns:
        The texture (concentrations and nucleus mask).
    """
    canvas = _Canvas(shape, mpp, rng)
    if name == "TUM":
        (_tum_hcc if style == "hcc" else _tum_gland)(canvas, atypia)
    elif name in _RECIPES:
        _RECIPES[name](canvas)
    else:
        raise ValueError(f"unknown texture {name!r}; known: {TISSUE_TEXTURES} and BACK")
    return canvas.finish()


def render_background(
    shape: tuple[int, int], rng: np.random.Generator, level: float | None = None
) -> np.ndarray:
    """Empty glass: bright, unsaturated RGB with light smooth noise.

    Args:
        shape: (height, width) in pixels.
        rng: generator.
        level: grey level (default: drawn in 236-246).

    Returns:
        ``(H, W, 3)`` float32 RGB in 0-255.
    """
    grey = float(rng.uniform(236.0, 246.0)) if level is None else level
    tint = rng.normal(0.0, 0.6, 3).astype(np.float32)
    noise = _fft_noise(shape, 1.5, 1.5, 0.0, rng) * 1.5
    return np.clip(grey + tint + noise[..., None], 0, 255).astype(np.float32)
