"""Cohort specs: the YAML that ``histoprog synth cohort --spec`` reads, validated.

Keys (defaults in brackets)::

    name: demo_discovery            # required; cohort name (letters, digits, _ . -)
    kind: crlm                      # crlm | hcc [crlm]
    n_patients: 60                  # required, >= 1
    seed: 101                       # required, >= 0
    id_prefix: DISC-                # slide/patient ids are <prefix><number> [<name>-]
    grid: {rows: [22, 28], cols: [22, 28]}   # inclusive ranges, >= 16 [crlm 22-28, hcc 16-18]
    formats: [svs, tiff]            # cycled by patient index [svs, tiff]
    magnifications: [20, 40]        # cycled by index // len(formats) [crlm [20], hcc [40]]
    levels: 3                       # pyramid levels, 2-5 [3]
    level_factor: {svs: 4, tiff: 2} # 2 or 4, or per format [{svs: 4, tiff: 2}]
    tile_size: 256                  # TIFF tile side, multiple of 16 [256]
    jpeg_quality: 85                # 50-100 [85]
    stain_jitter: 1.0               # 0 = reference H&E for every slide [1.0]
    texture_variants: 4             # texture sheets per class [4]
    bad_slides: {3: no_mpp}         # patient number (1-based) -> kind [none]
    sof_effect: 1.0                 # CRLM: multiplies the planted SOF log hazard ratios [1.0]
    risk_effect: 1.0                # HCC: log hazard ratio per SD of the latent risk [1.0]
    atypia_slope: 1.3               # HCC: tumour atypia = logistic(slope x risk) [1.3]

Bad-slide kinds: ``corrupt`` (the file is garbage bytes), ``missing`` (listed but not
written), ``no_mpp`` (no resolution, no AppMag, mpp column empty: must fail with a
message naming the ``mpp`` column), ``mpp_in_sheet`` (no resolution in the file, mpp
given in slides.tsv), ``appmag_only`` (SVS with AppMag but no MPP: mpp from 10 / objective
power; the slide is written as SVS whatever ``formats`` says).
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from histoprog.errors import InputError

__all__ = ["BAD_KINDS", "CohortSpec", "load_spec", "parse_spec"]

BAD_KINDS = ("corrupt", "missing", "no_mpp", "mpp_in_sheet", "appmag_only")
"""Kinds of deliberately bad slides a spec can ask for."""

_KNOWN = {
    "name",
    "kind",
    "n_patients",
    "seed",
    "id_prefix",
    "grid",
    "formats",
    "magnifications",
    "levels",
    "level_factor",
    "tile_size",
    "jpeg_quality",
    "stain_jitter",
    "texture_variants",
    "bad_slides",
    "risk_effect",
    "atypia_slope",
    "sof_effect",
}
_ID_RE = re.compile(r"^[A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class CohortSpec:
    """A validated cohort spec (see the module docstring for the keys)."""

    name: str
    n_patients: int
    seed: int
    kind: str = "crlm"
    id_prefix: str = ""
    rows: tuple[int, int] = (22, 28)
    cols: tuple[int, int] = (22, 28)
    formats: tuple[str, ...] = ("svs", "tiff")
    magnifications: tuple[int, ...] = (20,)
    levels: int = 3
    level_factor: dict[str, int] = field(default_factory=lambda: {"svs": 4, "tiff": 2})
    tile_size: int = 256
    jpeg_quality: int = 85
    stain_jitter: float = 1.0
    texture_variants: int = 4
    bad_slides: dict[int, str] = field(default_factory=dict)
    risk_effect: float = 1.0
    atypia_slope: float = 1.3
    sof_effect: float = 1.0

    def as_dict(self) -> dict[str, Any]:
        """JSON/YAML-friendly form (tuples as lists, string keys)."""
        out = asdict(self)
        out["bad_slides"] = {str(k): v for k, v in self.bad_slides.items()}
        for key in ("rows", "cols", "formats", "magnifications"):
            out[key] = list(out[key])
        return out

    def patient_id(self, index: int) -> str:
        """Id of the patient (and its slide) at 0-based ``index``."""
        width = max(3, len(str(self.n_patients)))
        return f"{self.id_prefix}{index + 1:0{width}d}"

    def slide_format(self, index: int) -> str:
        """Format of the slide at 0-based ``index`` (``formats`` cycled)."""
        if self.bad_slides.get(index + 1) == "appmag_only":
            return "svs"
        return self.formats[index % len(self.formats)]

    def magnification(self, index: int) -> int:
        """Objective power of the slide at ``index`` (cycled by ``index // len(formats)``)."""
        return self.magnifications[(index // len(self.formats)) % len(self.magnifications)]


def _fail(where: str, key: str, problem: str, fix: str) -> InputError:
    """An InputError naming the spec key."""
    return InputError(f"spec key '{key}' in {where}", problem, fix)


def _int(where: str, key: str, value: Any, lo: int, hi: int | None = None) -> int:
    """Validate an integer in [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, key, f"must be an integer, got {value!r}", f"write e.g. {key}: {lo}")
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise _fail(where, key, f"must be {rng}, got {value}", f"use a value {rng}")
    return value


_SIGNAL = {"risk_effect": 1.0, "atypia_slope": 1.3, "sof_effect": 1.0}
"""Planted-signal keys and their defaults (HCC: the latent risk's hazard and image effects;
CRLM: the SOF effect multiplier)."""


def _number(where: str, key: str, value: Any, lo: float, hi: float) -> float:
    """Validate a number in [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise _fail(where, key, f"must be a number in {lo}..{hi}, got {value!r}", f"{key}: 1.0")
    return float(value)


def _range(where: str, key: str, value: Any) -> tuple[int, int]:
    """Validate an inclusive [min, max] grid range (or one integer)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise _fail(
            where, key, f"must be [min, max] or one integer, got {value!r}", f"{key}: [22, 28]"
        )
    lo = _int(where, key, value[0], 16, 4096)
    hi = _int(where, key, value[1], 16, 4096)
    if lo > hi:
        raise _fail(where, key, f"min {lo} > max {hi}", "swap the two numbers")
    return lo, hi


def parse_spec(data: Any, where: str = "spec") -> CohortSpec:
    """Validate a spec mapping (as loaded from YAML).

    Args:
        data: the mapping.
        where: what to call it in messages (e.g. the file path).

    Returns:
        The validated spec.

    Raises:
        InputError: naming the bad key, what is wrong and how to fix it.
    """
    if not isinstance(data, dict):
        raise InputError(where, "is not a mapping of spec keys", "see histoprog.synth.spec")
    unknown = sorted(set(map(str, data)) - _KNOWN)
    if unknown:
        raise _fail(where, unknown[0], "is not a known key", f"use only {sorted(_KNOWN)}")
    for key in ("name", "n_patients", "seed"):
        if key not in data:
            raise _fail(where, key, "is missing", f"add '{key}:' to the spec")
    name = data["name"]
    if not isinstance(name, str) or not name or not _ID_RE.match(name):
        raise _fail(
            where, "name", f"must be letters, digits, _ . - only, got {name!r}", "rename the cohort"
        )
    kind = data.get("kind", "crlm")
    if kind not in ("crlm", "hcc"):
        raise _fail(where, "kind", f"must be 'crlm' or 'hcc', got {kind!r}", "kind: crlm")
    n = _int(where, "n_patients", data["n_patients"], 1, 100000)
    seed = _int(where, "seed", data["seed"], 0, 2**32 - 1)
    prefix = data.get("id_prefix", f"{name}-")
    if not isinstance(prefix, str) or not _ID_RE.match(prefix):
        raise _fail(
            where,
            "id_prefix",
            f"must be letters, digits, _ . - only, got {prefix!r}",
            "id_prefix: P",
        )
    default_grid = (22, 28) if kind == "crlm" else (16, 18)
    grid = data.get("grid", {"rows": default_grid, "cols": default_grid})
    if not isinstance(grid, dict) or set(grid) - {"rows", "cols"}:
        raise _fail(
            where,
            "grid",
            f"must be a mapping with rows and cols, got {grid!r}",
            "grid: {rows: [22, 28], cols: [22, 28]}",
        )
    rows = _range(where, "grid.rows", grid.get("rows", default_grid))
    cols = _range(where, "grid.cols", grid.get("cols", default_grid))
    formats = data.get("formats", ["svs", "tiff"])
    if (
        not isinstance(formats, list)
        or not formats
        or any(f not in ("svs", "tiff") for f in formats)
    ):
        raise _fail(
            where,
            "formats",
            f"must be a non-empty list of svs/tiff, got {formats!r}",
            "formats: [svs, tiff]",
        )
    mags = data.get("magnifications", [20] if kind == "crlm" else [40])
    if not isinstance(mags, list) or not mags or any(m not in (20, 40) for m in mags):
        raise _fail(
            where,
            "magnifications",
            f"must be a non-empty list of 20/40, got {mags!r}",
            "magnifications: [20, 40]",
        )
    levels = _int(where, "levels", data.get("levels", 3), 2, 5)
    factor = data.get("level_factor", {"svs": 4, "tiff": 2})
    if isinstance(factor, int) and not isinstance(factor, bool):
        factor = {"svs": factor, "tiff": factor}
    if (
        not isinstance(factor, dict)
        or set(factor) != {"svs", "tiff"}
        or any(v not in (2, 4) for v in factor.values())
    ):
        raise _fail(
            where,
            "level_factor",
            f"must be 2, 4 or {{svs: 2|4, tiff: 2|4}}, got {factor!r}",
            "level_factor: {svs: 4, tiff: 2}",
        )
    for fmt, f in factor.items():
        for mag in mags:
            if (112 * mag // 10) % (f ** (levels - 1)):
                raise _fail(
                    where,
                    "levels",
                    f"{levels} levels with factor {f} ({fmt}) do not divide the "
                    f"{112 * mag // 10} px grid cell at {mag}x",
                    "use fewer levels or factor 2",
                )
    tile = _int(where, "tile_size", data.get("tile_size", 256), 16, 4096)
    if tile % 16:
        raise _fail(where, "tile_size", f"must be a multiple of 16, got {tile}", "tile_size: 256")
    quality = _int(where, "jpeg_quality", data.get("jpeg_quality", 85), 50, 100)
    jitter = data.get("stain_jitter", 1.0)
    if isinstance(jitter, bool) or not isinstance(jitter, int | float) or not 0 <= jitter <= 5:
        raise _fail(
            where, "stain_jitter", f"must be a number in 0..5, got {jitter!r}", "stain_jitter: 1.0"
        )
    variants = _int(where, "texture_variants", data.get("texture_variants", 4), 1, 16)
    bad_raw = data.get("bad_slides") or {}
    if not isinstance(bad_raw, dict):
        raise _fail(
            where,
            "bad_slides",
            f"must map patient numbers to kinds, got {bad_raw!r}",
            "bad_slides: {3: no_mpp}",
        )
    bad: dict[int, str] = {}
    for k, v in bad_raw.items():
        num = _int(where, "bad_slides", k, 1, n)
        if v not in BAD_KINDS:
            raise _fail(
                where,
                "bad_slides",
                f"unknown kind {v!r} for patient {k}",
                f"use one of {list(BAD_KINDS)}",
            )
        bad[num] = v
    signal = {key: _number(where, key, data.get(key, d), 0, 10) for key, d in _SIGNAL.items()}
    return CohortSpec(
        name=name,
        n_patients=n,
        seed=seed,
        kind=kind,
        id_prefix=prefix,
        rows=rows,
        cols=cols,
        formats=tuple(formats),
        magnifications=tuple(mags),
        levels=levels,
        level_factor=dict(factor),
        tile_size=tile,
        jpeg_quality=quality,
        stain_jitter=float(jitter),
        texture_variants=variants,
        bad_slides=bad,
        **signal,
    )


def load_spec(path: str | os.PathLike[str]) -> CohortSpec:
    """Read and validate a YAML spec file.

    Raises:
        InputError: a missing or unparsable file, or a bad key (named in the message).
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"spec file {p}", "does not exist", "pass the path of a cohort YAML")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        raise InputError(f"spec file {p}", f"is not valid YAML ({err})", "fix the syntax") from err
    return parse_spec(data, str(p))
