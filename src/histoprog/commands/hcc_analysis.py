"""``histoprog hcc_analysis``: RFS analysis of the MIL score per HCC cohort (METHODS 6.7).

Tables in ``--out-dir`` (results/analysis/hcc/), one row block per cohort: ``risk_scores``,
``km_groups``, ``logrank`` (all patients and within each clinical stratum, column
``subset``), ``univariate_cox``, ``time_roc``, ``exclusions``, and
``multivariate_<cohort>.tsv``. Figures per cohort: ``km_<cohort>.png``,
``forest_<cohort>.png``, ``time_roc_<cohort>.png``, ``km_strata_<cohort>.png``,
``gallery_<cohort>.png`` (the highest- and lowest-scoring tiles with their logits).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from histoprog.analysis.features import read_clinical
from histoprog.cli_options import add_outcome_options, add_threshold_option
from histoprog.defaults import default
from histoprog.errors import InputError
from histoprog.hcc.analysis import (
    HCCCohortResult,
    HCCSettings,
    analyse_cohort,
    gallery_tiles,
    scored_patients,
)
from histoprog.hcc.bags import Bag
from histoprog.io import save_figure, write_tsv
from histoprog.plots.hcc import tile_gallery
from histoprog.plots.survival import (
    forest_plot,
    km_figure,
    km_panels,
    left_out,
    time_roc_figure,
)
from histoprog.sheets import read_table

log = logging.getLogger("histoprog.hcc_analysis")

TABLES = ("risk_scores", "km_groups", "logrank", "univariate_cox", "time_roc", "exclusions")
FIGURES = ("km", "forest", "time_roc", "km_strata", "gallery")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``hcc_analysis`` subcommand."""
    parser = subparsers.add_parser("hcc_analysis", help="RFS analysis of the MIL score")
    parser.add_argument(
        "--cohort",
        nargs=5,
        action="append",
        required=True,
        metavar=("NAME", "ROLE", "MIL_TSV", "CLINICAL", "SLIDE_DIR"),
        help="a cohort: name, role, mil.tsv, clinical table, folder of per-slide outputs "
        "(<dir>/<slide>/nuclei.npz and mil_tiles.tsv, for the gallery); repeat per cohort",
    )
    add_outcome_options(parser, "hcc")
    add_threshold_option(parser)
    parser.add_argument(
        "--settings",
        default="{}",
        help="config section hcc.analysis as JSON text (missing keys: their defaults)",
    )
    parser.add_argument(
        "--outcome-optional",
        action="store_true",
        help="a cohort whose clinical table has no outcome columns is scored only "
        "(a model bundle is applied)",
    )
    parser.add_argument("--out-dir", required=True)
    parser.set_defaults(func=run)


def parse_settings(args: argparse.Namespace) -> tuple[HCCSettings, int]:
    """Settings from the JSON text and the outcome options; also the gallery size."""
    try:
        values = json.loads(args.settings)
    except json.JSONDecodeError as err:
        raise InputError(
            "--settings", f"is not JSON ({err})", "pass hcc.analysis as JSON"
        ) from None
    gallery = int(values.pop("gallery_tiles", default("hcc.analysis.gallery_tiles")))
    known = {"clinical_factors", "auc_years", "survival_at", "risk_step"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError("config section hcc.analysis", f"unknown key(s) {unknown}", "see README")
    if "auc_years" in values:
        values["auc_years"] = tuple(float(y) for y in values["auc_years"])
    settings = HCCSettings(time=args.time, event=args.event, threshold=args.threshold, **values)
    return settings, gallery


def gallery_figure(name: str, mil: pd.DataFrame, slide_dir: str, n: int) -> object:
    """The cohort's tile gallery from the per-slide tile logits and bags."""
    parts = []
    for slide in mil.loc[mil["status"] == "ok", "slide_id"]:
        tiles = pd.read_csv(Path(slide_dir) / slide / "mil_tiles.tsv", sep="\t")
        parts.append(tiles.assign(slide_id=slide, index=np.arange(len(tiles))))
    if not parts:
        return tile_gallery([], [], f"{name}: no scored slide")
    top, bottom = gallery_tiles(pd.concat(parts, ignore_index=True), n)
    bags: dict[str, Bag] = {}

    def images(rows: pd.DataFrame) -> list[tuple[np.ndarray, float, str]]:
        out = []
        for r in rows.itertuples():
            if r.slide_id not in bags:
                bags[r.slide_id] = Bag.load(Path(slide_dir) / r.slide_id / "nuclei.npz")
            out.append((bags[r.slide_id].tiles[r.index], float(r.logit), r.slide_id))
        return out

    return tile_gallery(images(top), images(bottom), f"cohort {name}: tiles by MIL tile logit")


def write_cohort_figures(res: HCCCohortResult, out: Path, s: HCCSettings) -> None:
    """KM, forest, time-ROC and stratified KM figures of one cohort."""
    name = res.name
    n_left, why = left_out(res.exclusions, name, res.data["patient_id"])
    title = f"{name}: RFS by MIL group"
    km = km_figure(res.km.curves, res.km.tests, title, s.risk_step,
                   n_total=len(res.data) + n_left, left_out=why)  # fmt: skip
    save_figure(out / f"km_{name}.png", km, dpi=100)
    forest = forest_plot(res.multivariate, f"{name}: multivariate Cox of RFS")
    save_figure(out / f"forest_{name}.png", forest, dpi=100)
    marks = [12.0 * y for y in s.auc_years]
    roc = time_roc_figure(res.roc_curves, marks, f"{name}: time-dependent AUC of RFS")
    save_figure(out / f"time_roc_{name}.png", roc, dpi=100)
    panels = [(g.subset, g.curves, g.tests) for g in res.strata]
    strata = km_panels(panels, f"{name}: RFS by MIL group within clinical strata",
                       risk_step=s.risk_step)  # fmt: skip
    save_figure(out / f"km_strata_{name}.png", strata, dpi=100)


def run(args: argparse.Namespace) -> None:
    """Analyse every cohort and write the tables and figures."""
    s, n_gallery = parse_settings(args)
    out = Path(args.out_dir)
    tables: dict[str, list[pd.DataFrame]] = {k: [] for k in TABLES}
    for name, role, mil_path, clinical_path, slide_dir in args.cohort:
        mil = read_table(mil_path, "MIL table")
        clinical = read_clinical(clinical_path, name, s.time, s.event, args.outcome_optional)
        res = analyse_cohort(name, mil, clinical, s) if s.time in clinical.columns else None
        save_figure(out / f"gallery_{name}.png", gallery_figure(name, mil, slide_dir, n_gallery),
                    dpi=100)  # fmt: skip
        if res is None:
            data, excl = scored_patients(name, mil, clinical, s.threshold)
            cols = ["patient_id", s.time, s.event, "mil_score", "mil_high", "mil_group"]
            tables["risk_scores"].append(data.reindex(columns=cols).assign(cohort=name, role=role))
            tables["exclusions"].append(excl)
            log.warning("cohort %s: no outcome columns; MIL scores and groups only", name)
            continue
        cols = ["patient_id", s.time, s.event, "mil_score", "mil_high", "mil_group", *res.factors]
        tables["risk_scores"].append(res.data[cols].assign(cohort=name, role=role))
        tables["km_groups"].append(pd.concat([res.km.groups, *(g.groups for g in res.strata)]))
        tables["logrank"].append(pd.concat([res.km.tests, *(g.tests for g in res.strata)]))
        tables["univariate_cox"].append(res.univariate)
        tables["time_roc"].append(res.time_roc)
        tables["exclusions"].append(res.exclusions)
        write_tsv(out / f"multivariate_{name}.tsv", res.multivariate)
        write_cohort_figures(res, out, s)
        main = res.km.tests.iloc[0]
        log.info("cohort %s: %d patients, MIL groups log-rank p = %.4g, HR %.2f", name,
                 len(res.data), main["p"], main["hr"])  # fmt: skip
    for key, parts in tables.items():
        if parts:  # only risk_scores and exclusions when no cohort has an outcome
            write_tsv(out / f"{key}.tsv", pd.concat(parts, ignore_index=True))
