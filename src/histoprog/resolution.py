"""Plausibility of a slide's resolution: the sheet's ``mpp`` and the file's own.

Brightfield whole-slide scanners scan at about 0.1 um/px (100x oil) to 2 um/px (5x); a
value outside :data:`PLAUSIBLE_MPP` is almost always a typo (``5.0`` for ``0.25``) or a
value in the wrong unit, and would make tiling read tiles of a few pixels and upsample
them. When the slide table gives an ``mpp`` and the file has its own (``openslide.mpp-x``
or the OME-TIFF physical pixel size), the two must agree within :data:`MPP_AGREEMENT`:
25 %, because users write the nominal 0.25 / 0.5 um/px while scanners record their own
(Hamamatsu 40x 0.2265, 10.4 % from 0.25; Ventana 0.2325; Leica 0.263), whereas the
mistakes worth stopping for are a 20x/40x mix-up (100 %) or a misplaced decimal point.
Both checks are skipped when the override (config key ``slides.allow_unusual_mpp``) is
set; the file's own value is then used, as always.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from histoprog.errors import InputError, SlideError

if TYPE_CHECKING:
    from histoprog.slides import SlideInfo

__all__ = [
    "PLAUSIBLE_MPP",
    "MPP_AGREEMENT",
    "mpp_range_problem",
    "check_sheet_mpp",
    "check_slide_mpp",
    "positive_float",
]

PLAUSIBLE_MPP: tuple[float, float] = (0.1, 2.0)
"""Lowest and highest level-0 microns per pixel accepted without the override."""

MPP_AGREEMENT = 0.25
"""Largest relative difference (larger / smaller - 1) between sheet and file mpp."""

OVERRIDE = (
    "if the scanner really has this resolution, set slides.allow_unusual_mpp: true in config.yaml"
)


def mpp_range_problem(mpp: float) -> str | None:
    """Why ``mpp`` is not a plausible brightfield resolution, or None when it is."""
    low, high = PLAUSIBLE_MPP
    if low <= mpp <= high:
        return None
    return (
        f"{mpp:g} um/px is outside the plausible brightfield range {low:g}-{high:g} um/px "
        "(0.25 is a 40x scan, 0.5 a 20x scan)"
    )


def check_sheet_mpp(mpp: float, where: str, allow_unusual: bool = False) -> None:
    """Stop at start when a slide table's ``mpp`` is implausible.

    Raises:
        InputError: ``mpp`` outside :data:`PLAUSIBLE_MPP` and no override.
    """
    problem = None if allow_unusual else mpp_range_problem(mpp)
    if problem:
        raise InputError(
            where,
            problem,
            f"correct the value (level-0 microns per pixel, e.g. 0.25 or 0.5); {OVERRIDE}",
        )


def check_slide_mpp(
    info: SlideInfo, sheet_mpp: float | None, slide_id: str, allow_unusual: bool = False
) -> None:
    """Fail a slide whose resolution is implausible or contradicts its slide-table entry.

    Args:
        info: the opened slide; ``info.mpp`` is the file's own value when
            ``info.mpp_source`` is ``metadata``.
        sheet_mpp: the slide table's ``mpp`` (None or NaN when empty).
        slide_id: for the message.
        allow_unusual: the override; nothing is checked.

    Raises:
        SlideError: the mpp used is outside :data:`PLAUSIBLE_MPP`, or the sheet and the
            file disagree by more than :data:`MPP_AGREEMENT`.
    """
    if allow_unusual:
        return
    where = f"slide '{slide_id}' ({info.path})"
    problem = mpp_range_problem(info.mpp)
    if problem:
        raise SlideError(
            where,
            f"its resolution ({info.mpp_source}) is implausible: {problem}",
            f"give the right value in the slide table's 'mpp' column; {OVERRIDE}",
        )
    if sheet_mpp is None or sheet_mpp != sheet_mpp or info.mpp_source != "metadata":
        return
    apart = max(sheet_mpp, info.mpp) / min(sheet_mpp, info.mpp) - 1.0
    if apart > MPP_AGREEMENT:
        raise SlideError(
            where,
            f"the slide table gives mpp {sheet_mpp:g} but the file records {info.mpp:g} um/px "
            f"({apart:.0%} apart; at most {MPP_AGREEMENT:.0%} is accepted)",
            "correct or empty the slide table's 'mpp' value (the file's own value is used "
            f"when it has one); {OVERRIDE}",
        )


def positive_float(value: Any) -> float | None:
    """Parse a positive finite float (a metadata field), else None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None
