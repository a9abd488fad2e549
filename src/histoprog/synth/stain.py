"""Physical staining: hematoxylin/eosin concentrations -> RGB through Beer-Lambert.

Optical density ``OD = -log10(I / Io)`` is linear in the stain concentrations:
``OD_rgb = c_H * v_H + c_E * v_E``. Each slide gets its own stain vectors, perturbed
around the standard H&E reference (Macenko's ``HERef``, as in torchstain), its own
concentration scales and its own illumination ``Io``, so colours vary between slides the
way a stain normaliser is meant to undo.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["HE_REFERENCE", "StainModel", "random_stain", "od_to_rgb"]

HE_REFERENCE = np.array([[0.5626, 0.7201, 0.4062], [0.2159, 0.8012, 0.5581]])
"""Reference optical-density vectors (rows: hematoxylin, eosin; columns: R, G, B)."""


@dataclass(frozen=True)
class StainModel:
    """One slide's stain: unit OD vectors, concentration scales and illumination.

    Attributes:
        vectors: 2 x 3 array, rows = hematoxylin and eosin unit OD vectors.
        scales: multipliers of the H and E concentrations (stain intensity).
        io: transmitted light intensity of an empty pixel (0-255).
    """

    vectors: np.ndarray
    scales: tuple[float, float] = (1.0, 1.0)
    io: float = 240.0

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly form (for truth files)."""
        return {
            "vectors": np.round(self.vectors, 6).tolist(),
            "scales": [round(s, 6) for s in self.scales],
            "io": round(self.io, 4),
        }


def random_stain(rng: np.random.Generator, jitter: float = 1.0) -> StainModel:
    """A stain perturbed around :data:`HE_REFERENCE`.

    Args:
        rng: the slide's stain generator.
        jitter: strength of the perturbation (0 = the reference exactly).

    Returns:
        The slide's stain model.
    """
    vec = HE_REFERENCE + jitter * rng.normal(0.0, 0.05, size=(2, 3))
    vec = np.clip(vec, 0.02, None)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    scales = tuple(float(s) for s in np.exp(jitter * rng.normal(0.0, 0.12, size=2)))
    io = float(np.clip(242.0 + jitter * rng.normal(0.0, 4.0), 225.0, 252.0))
    return StainModel(vectors=vec, scales=(scales[0], scales[1]), io=io)


def od_to_rgb(conc: np.ndarray, stain: StainModel) -> np.ndarray:
    """Render H/E concentration maps as float RGB (0-255, not rounded).

    Args:
        conc: ``(..., 2)`` array of hematoxylin and eosin concentrations (OD units).
        stain: the slide's stain.

    Returns:
        ``(..., 3)`` float32 array of intensities in [0, io].
    """
    mat = (np.asarray(stain.scales)[:, None] * stain.vectors).astype(np.float32)
    od = conc.astype(np.float32, copy=False) @ mat
    return (stain.io * np.power(np.float32(10.0), -od)).astype(np.float32, copy=False)
