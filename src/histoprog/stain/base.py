"""The stain normaliser interface and the fitted-parameter records (METHODS section 2).

Every normaliser is built as ``Normalizer(target, background_intensity, *, options)``,
fitted once per slide (:meth:`StainNormalizer.fit`) and then applied tile by tile or in
batches with those parameters.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Self

import numpy as np

from histoprog.errors import InputError
from histoprog.stain.pixels import StainMatrix, matrix_tuple


@dataclass(frozen=True, kw_only=True)
class StainParams:
    """Fitted stain parameters of one slide (or of the target); base of each method's record.

    Attributes:
        stain_matrix: rows H, E (unit length); columns OD of R, G, B.
        max_conc: 99th percentiles of the H and E concentrations.
        Io: the background intensity the fit used (see :class:`StainNormalizer`); recorded
            under torchstain's and Macenko's published name ``Io``, so stage outputs and
            checkpoint records keep their key.
        n_tiles: tiles pooled for the fit (0 for a built-in reference).
        n_pixels: pixels pooled before subsampling.
        n_tissue_pixels: tissue pixels among the pixels used.
    """

    method: ClassVar[str]
    """The normaliser's name in :data:`~histoprog.stain.NORMALIZERS`, written as ``method``."""

    stain_matrix: StainMatrix
    max_conc: tuple[float, float]
    Io: float
    n_tiles: int
    n_pixels: int
    n_tissue_pixels: int

    @property
    def matrix(self) -> np.ndarray:
        """The stain matrix as a 2 x 3 float64 array."""
        return np.asarray(self.stain_matrix, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists and plain numbers), with the ``method`` name."""
        d = asdict(self)
        d["stain_matrix"] = [list(r) for r in self.stain_matrix]
        d["max_conc"] = list(self.max_conc)
        d["method"] = self.method
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Self:
        """Inverse of :meth:`to_dict`; raises InputError on a malformed dict."""
        if d.get("method") != cls.method:
            raise InputError(
                "stain parameters",
                f"are for method {d.get('method')!r}, expected {cls.method!r}",
                f"use the JSON written by the {cls.method} normaliser",
            )
        names = {f.name for f in fields(cls)}
        missing = sorted(names - set(d))
        if missing:
            raise InputError(
                "stain parameters", f"missing key(s) {missing}", "re-run the stain fit"
            )
        kw = {k: d[k] for k in names}
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
        kw["stain_matrix"] = matrix_tuple(m)
        kw["max_conc"] = (float(c[0]), float(c[1]))
        return cls(**kw)


class StainNormalizer(ABC):
    """A stain normaliser: fit a slide's stain parameters, map its tiles to a target.

    Conventions shared by every method:

    * Tiles are RGB ``uint8`` arrays, H x W x 3 (N x H x W x 3 for batches).
    * A stain matrix is 2 x 3: row 0 = haematoxylin (H), row 1 = eosin (E), columns =
      optical density (OD) of R, G, B, each row of unit length. H is the row with the
      larger red OD component (haematoxylin absorbs red light, eosin hardly does; the same
      rule as torchstain's and staintools' ordering heuristics).
    * ``max_conc`` holds the 99th percentiles of the H and E concentrations.
    * **Background intensity** (``background_intensity``, ``I0``; ``Io`` in torchstain,
      in Macenko's reference code and in the parameter records): the transmitted-light
      intensity of an empty, unstained pixel, in the 8-bit RGB units of the tiles
      (positive; the config schema bounds ``stain.io`` to at most 255). Optical density
      is ``OD = -log(I / I0)`` per channel (each method's exact handling of dark and
      bright values is in its docstring), and a normalised pixel is ``I0 * exp(-OD)``.
      Parameters remember the ``I0`` of their fit; a normaliser refuses parameters
      fitted with another one. There is no default: the caller passes it. In the
      workflow, Macenko (CRLM) takes config ``stain.io`` (``histoprog stain --io``,
      recorded in the stain stage's target and reused from there by ``classify``;
      ``histoprog train_tissue`` and ``evaluate_tissue`` take ``--io`` too; torchstain's
      240 unless configured), and Vahadane (HCC, ``histoprog nuclei``) uses
      :data:`~histoprog.stain.vahadane.VAHADANE_BACKGROUND_INTENSITY` (255, the 8-bit
      full scale; it has no config key).

    Construction is the same for every method: ``Normalizer(target, background_intensity,
    *, method options)``, where ``target`` is an RGB ``uint8`` target image (fitted with
    the same procedure) or ``None`` for torchstain's standard reference stains
    (``HERef``/``maxCRef``), so both methods aim at the same standard appearance.
    :func:`~histoprog.stain.make_normalizer` builds one by name.

    Attributes:
        method: the name of the method, as in the parameter records.
        params_type: its fitted-parameter record.
        target: the target's parameters.
        background_intensity: ``I0`` as above.
    """

    method: ClassVar[str]
    params_type: ClassVar[type[StainParams]]
    target: StainParams
    background_intensity: float

    @abstractmethod
    def fit(self, tiles: Iterable[np.ndarray]) -> StainParams:
        """Fit one source stain matrix and max concentrations on the pooled ``tiles``.

        Args:
            tiles: RGB uint8 tiles (H x W x 3; sizes may differ), e.g. up to 200 random
                tissue tiles of a slide.

        Returns:
            The source parameters for :meth:`transform` (``to_dict()`` is JSON-ready).

        Raises:
            InputError: no tiles, a malformed tile, too few tissue pixels, or a
                degenerate fit.
        """

    @abstractmethod
    def transform(self, tile: np.ndarray, params: StainParams) -> np.ndarray:
        """Normalise one RGB uint8 tile (H x W x 3) with a slide's fitted parameters."""

    @abstractmethod
    def transform_batch(self, tiles: np.ndarray, params: StainParams) -> np.ndarray:
        """Normalise stacked RGB uint8 tiles (N x H x W x 3) with a slide's parameters."""

    @abstractmethod
    def _options(self) -> dict[str, Any]:
        """The method's settings its parameter records hold (besides ``Io``)."""

    def _params(
        self,
        matrix: np.ndarray,
        max_conc: Sequence[float],
        *,
        n_tiles: int,
        n_pixels: int,
        n_tissue_pixels: int,
    ) -> Any:
        """The parameter record of a fit, with ``Io`` and the method's :meth:`_options`."""
        return self.params_type(
            stain_matrix=matrix_tuple(matrix),
            max_conc=(float(max_conc[0]), float(max_conc[1])),
            Io=self.background_intensity,
            n_tiles=n_tiles,
            n_pixels=n_pixels,
            n_tissue_pixels=n_tissue_pixels,
            **self._options(),
        )

    def check_params(self, params: StainParams) -> None:
        """Raise InputError unless ``params`` are this method's, fitted with this ``I0``."""
        kind = self.params_type.__name__
        if not isinstance(params, self.params_type):
            raise InputError(
                "stain parameters",
                f"must be {kind}, got {type(params).__name__}",
                f"pass the result of {type(self).__name__}.fit or {kind}.from_dict",
            )
        if not math.isclose(params.Io, self.background_intensity):
            raise InputError(
                "stain parameters",
                f"were fitted with background intensity Io={params.Io}, this normaliser "
                f"uses Io={self.background_intensity}",
                "create the normaliser with the same background intensity as the fit",
            )


def check_background_intensity(method: str, background_intensity: float) -> float:
    """``background_intensity`` as a float, or InputError unless it is positive."""
    value = float(background_intensity)
    if not value > 0:
        raise InputError(
            f"{method} background intensity",
            f"must be positive (8-bit RGB units), got {background_intensity}",
            "pass config stain.io (Macenko) or VAHADANE_BACKGROUND_INTENSITY (Vahadane)",
        )
    return value
