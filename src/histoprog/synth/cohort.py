"""Generate a whole synthetic cohort with its planted truth.

Output layout of ``generate_cohort(spec, out)``::

    out/slides/<slide_id>.svs|.tiff   slides (one per patient; slide_id == patient_id)
    out/slides.tsv                    slide_id, patient_id, path (relative to out/), mpp
    out/clinical.tsv                  patient_id, clinical variables, time, event
    out/truth/grids/<slide_id>.npy    true class grid (int8, codes into sof.CLASSES)
    out/truth/sofs.tsv                compute_sofs of the true grid (true thresholds)
    out/truth/patients.tsv            latent layout parameters, CRS, design, linear predictor
    out/truth/slides.tsv              format, magnification, mpp, sizes, pyramid, stain, bad kind
    out/truth/truth.json              seed, spec, thresholds, planted model, conventions

Every random draw comes from :func:`histoprog.synth.seeding.rng_for` keyed by the seed,
a purpose and the patient index, so the same spec gives byte-identical tables and
pixel-identical slides, and patient ``i`` does not depend on ``n_patients``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from histoprog import __version__
from histoprog.io import atomic_path, write_json, write_tsv
from histoprog.sof import QC_COLUMNS, RegionParams, compute_sofs, sof_columns
from histoprog.synth.clinical import (
    TRUE_THRESHOLDS,
    atypia_of,
    crlm_clinical,
    crlm_design,
    crlm_model,
    crs_points,
    draw_survival,
    hcc_design,
    hcc_model,
    hcc_patient,
)
from histoprog.synth.layout import make_grid, sample_latent
from histoprog.synth.render import SlideGeometry, SlideRenderer, TextureBank
from histoprog.synth.seeding import rng_for
from histoprog.synth.slide_writer import SUFFIX, write_slide
from histoprog.synth.spec import CohortSpec
from histoprog.synth.stain import random_stain
from histoprog.synth.texture import render_texture

__all__ = ["Patient", "make_patient", "generate_cohort"]

log = logging.getLogger(__name__)


@dataclass
class Patient:
    """Everything generated for one patient except the slide pixels."""

    index: int
    patient_id: str
    grid: np.ndarray
    latent: dict[str, Any]
    sofs: dict[str, Any]
    clinical: dict[str, Any]
    design: dict[str, float]
    time: float
    event: int
    lp: float
    risk: float | None = None


def make_patient(spec: CohortSpec, index: int) -> Patient:
    """Layout, true SOFs, clinical variables and survival of patient ``index`` (0-based)."""
    rng = rng_for(spec.seed, "layout", index)
    latent = sample_latent(rng, "hcc" if spec.kind == "hcc" else "crlm")
    rows = int(rng.integers(spec.rows[0], spec.rows[1] + 1))
    cols = int(rng.integers(spec.cols[0], spec.cols[1] + 1))
    grid = make_grid(latent, rows, cols, rng)
    sofs = compute_sofs(grid, TRUE_THRESHOLDS)
    risk = None
    if spec.kind == "hcc":
        risk, clin = hcc_patient(rng_for(spec.seed, "clinical", index))
        design = hcc_design(risk, clin)
        model = hcc_model(spec.risk_effect)
    else:
        clin = crlm_clinical(rng_for(spec.seed, "clinical", index))
        model = crlm_model(spec.sof_effect)
        design = {k: float(v) for k, v in crlm_design(sofs, clin, model).items()}
    t, e, lp = draw_survival(design, model, rng_for(spec.seed, "survival", index))
    return Patient(
        index,
        spec.patient_id(index),
        grid,
        latent.as_dict(),
        sofs,
        clin,
        design,
        t,
        e,
        lp,
        risk,
    )


class _Banks:
    """Texture banks of a cohort, built on first use per mpp."""

    def __init__(self, spec: CohortSpec) -> None:
        self.spec = spec
        self._banks: dict[float, TextureBank] = {}

    def get(self, mpp: float) -> TextureBank:
        if mpp not in self._banks:
            t0 = time.perf_counter()
            style = "hcc" if self.spec.kind == "hcc" else "crlm"
            # HCC tumour sheets are per patient (atypia from its risk): not in the bank.
            classes = ("DEB", "HEP", "LYM", "MUC", "STR")
            self._banks[mpp] = TextureBank.build(
                mpp,
                self.spec.seed,
                n_variants=self.spec.texture_variants,
                style=style,
                classes=classes if style == "hcc" else (*classes, "TUM"),
            )
            log.info("texture bank at %.2f mpp: %.1f s", mpp, time.perf_counter() - t0)
        return self._banks[mpp]

    def for_patient(self, patient: Patient, mpp: float) -> TextureBank:
        """The bank, with the patient's own tumour sheets for HCC (atypia from risk)."""
        bank = self.get(mpp)
        if patient.risk is None:
            return bank
        atypia = atypia_of(patient.risk, self.spec.atypia_slope)
        side = bank.sheet_px
        sheets = [
            render_texture(
                "TUM",
                (side, side),
                mpp,
                rng_for(self.spec.seed, "tumour", patient.index, v),
                style="hcc",
                atypia=atypia,
            ).conc.astype(np.float16)
            for v in range(self.spec.texture_variants)
        ]
        return bank.with_sheets("TUM", sheets)


def _write_bad(path: Path, kind: str, index: int, seed: int) -> None:
    """Replace a slide by garbage bytes (``corrupt``) or remove it (``missing``)."""
    if kind == "corrupt":
        junk = rng_for(seed, "corrupt", index).integers(0, 256, 4096, dtype=np.uint8)
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"II*\x00" + junk.tobytes())
    elif kind == "missing" and path.exists():
        path.unlink()


def generate_cohort(
    spec: CohortSpec,
    out: str | os.PathLike[str],
    *,
    write_slides: bool = True,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Write a cohort (slides, tables, truth) to ``out``.

    Args:
        spec: validated spec.
        out: output folder (created).
        write_slides: False writes tables and truth only (fast; for statistics tests).
        workers: threads tifffile may use for JPEG compression.
        progress: optional callback ``(done, total)`` after each patient.

    Returns:
        The truth slide table (one row per slide).
    """
    out = Path(out)
    banks = _Banks(spec)
    slide_rows, clin_rows, sof_rows, pat_rows, truth_rows = [], [], [], [], []
    t_start = time.perf_counter()
    for i in range(spec.n_patients):
        p = make_patient(spec, i)
        fmt = spec.slide_format(i)
        mag = spec.magnification(i)
        mpp = 10.0 / mag
        bad = spec.bad_slides.get(i + 1, "")
        path = out / "slides" / f"{p.patient_id}{SUFFIX[fmt]}"
        factor = spec.level_factor[fmt]
        geom = SlideGeometry.make(p.grid.shape[0], p.grid.shape[1], mpp, spec.levels, factor)
        stain = random_stain(rng_for(spec.seed, "stain", i), spec.stain_jitter)
        t0 = time.perf_counter()
        if write_slides and bad != "missing":
            renderer = SlideRenderer(
                p.grid, geom, banks.for_patient(p, mpp), stain, rng_for(spec.seed, "cells", i)
            )
            file_mpp = None if bad in ("no_mpp", "mpp_in_sheet", "appmag_only") else mpp
            write_slide(
                path,
                renderer,
                fmt=fmt,
                mpp=file_mpp,
                magnification=None if bad in ("no_mpp", "mpp_in_sheet") else mag,
                tile=spec.tile_size,
                quality=spec.jpeg_quality,
                workers=workers,
            )
            _write_bad(path, bad, i, spec.seed)
        seconds = time.perf_counter() - t0
        slide_rows.append(
            {
                "slide_id": p.patient_id,
                "patient_id": p.patient_id,
                "path": f"slides/{path.name}",
                "mpp": f"{mpp:g}" if bad == "mpp_in_sheet" else "",
            }
        )
        w, h = geom.size
        truth_rows.append(
            {
                "slide_id": p.patient_id,
                "format": fmt,
                "magnification": mag,
                "mpp": mpp,
                "width": w,
                "height": h,
                "rows": geom.rows,
                "cols": geom.cols,
                "cell_px": geom.cell_px,
                "levels": len(geom.downsamples),
                "level_factor": factor,
                "bad": bad,
                "stain_io": stain.io,
                "stain_scale_h": stain.scales[0],
                "stain_scale_e": stain.scales[1],
                "stain_h": " ".join(f"{v:.6f}" for v in stain.vectors[0]),
                "stain_e": " ".join(f"{v:.6f}" for v in stain.vectors[1]),
            }
        )
        model = hcc_model(spec.risk_effect) if spec.kind == "hcc" else crlm_model(spec.sof_effect)
        clin_rows.append(
            {
                "patient_id": p.patient_id,
                **p.clinical,
                model.time_column: p.time,
                model.event_column: p.event,
            }
        )
        sof_rows.append({"slide_id": p.patient_id, "patient_id": p.patient_id, **p.sofs})
        extra: dict[str, Any] = {}
        if p.risk is not None:
            extra = {"risk": p.risk, "atypia": atypia_of(p.risk, spec.atypia_slope)}
        else:
            extra = {"crs": crs_points(p.clinical)}
        pat_rows.append(
            {"patient_id": p.patient_id, **p.latent, **extra, **p.design, "linear_predictor": p.lp}
        )
        grid_path = out / "truth" / "grids" / f"{p.patient_id}.npy"
        with atomic_path(grid_path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, p.grid.astype(np.int8))
        log.info(
            "%s: %s %dx %dx%d grid, %dx%d px, %.1f s%s",
            p.patient_id,
            fmt,
            mag,
            geom.rows,
            geom.cols,
            w,
            h,
            seconds,
            f" (bad: {bad})" if bad else "",
        )
        if progress is not None:
            progress(i + 1, spec.n_patients)

    model = hcc_model(spec.risk_effect) if spec.kind == "hcc" else crlm_model(spec.sof_effect)
    clinical = pd.DataFrame(clin_rows)
    write_tsv(out / "slides.tsv", pd.DataFrame(slide_rows))
    write_tsv(out / "clinical.tsv", clinical)
    sofs = pd.DataFrame(sof_rows)[["slide_id", "patient_id", *sof_columns(), *QC_COLUMNS]]
    write_tsv(out / "truth" / "sofs.tsv", sofs)
    write_tsv(out / "truth" / "patients.tsv", pd.DataFrame(pat_rows))
    truth_slides = pd.DataFrame(truth_rows)
    write_tsv(out / "truth" / "slides.tsv", truth_slides)
    events = clinical[model.event_column]
    write_json(
        out / "truth" / "truth.json",
        {
            "generator": f"histoprog {__version__} synth cohort",
            "seed": spec.seed,
            "spec": spec.as_dict(),
            "kind": spec.kind,
            "n_patients": spec.n_patients,
            "thresholds": TRUE_THRESHOLDS,
            "region_params": RegionParams().__dict__,
            "model": model.as_dict(),
            "n_events": int(events.sum()),
            "event_rate": round(float(events.mean()), 6),
            "conventions": {
                "grid": "grid[r, c] is the tile with level-0 top-left (c*cell_px, r*cell_px)",
                "cell_um": 112.0,
                "cell_px": {"20x": 224, "40x": 448},
                "strip": "a partial background strip of 100 px (20x) / 200 px (40x) at the "
                "right and bottom edges",
                "classes": ["BACK", "DEB", "HEP", "LYM", "MUC", "STR", "TUM"],
                "sofs": "truth/sofs.tsv = histoprog.sof.compute_sofs(grid, thresholds)",
                "design": "x = 1(sof > cutpoint) for each model cutpoint; crs_high = CRS >= 3"
                if spec.kind == "crlm"
                else f"risk ~ N(0,1); tumour nuclear atypia = logistic({spec.atypia_slope:g} risk)",
            },
        },
    )
    log.info(
        "cohort %s: %d patients in %.1f s",
        spec.name,
        spec.n_patients,
        time.perf_counter() - t_start,
    )
    return truth_slides
