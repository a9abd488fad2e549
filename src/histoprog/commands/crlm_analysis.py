"""``histoprog crlm_analysis``: the CRLM survival analysis (METHODS 5) of all cohorts.

Fits on the discovery cohort, applies to the validation cohorts and writes the contract's
tables, ``model.json`` and figures into ``--out-dir`` (results/analysis/crlm/).
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from histoprog.analysis.crlm import CRLMResult, run_crlm
from histoprog.analysis.crlm_model import CRLMModel
from histoprog.analysis.crlm_settings import CRLMSettings
from histoprog.analysis.features import load_cohort
from histoprog.bundle import read_bundle
from histoprog.cli_options import add_outcome_options
from histoprog.errors import InputError
from histoprog.io import read_json, save_figure, write_json, write_tsv
from histoprog.thresholds import load_thresholds

log = logging.getLogger("histoprog.crlm_analysis")

TABLES: tuple[str, ...] = (
    "cutpoints",
    "univariate_cox",
    "correlation",
    "cutoff_scan",
    "stepwise",
    "model_coefficients",
    "risk_scores",
    "logrank",
    "km_groups",
    "time_roc",
    "time_roc_compare",
    "calibration",
    "exclusions",
    "table1",
    "followup",
    "associations",
)
"""Tables written as ``<name>.tsv``; also ``multivariate_<cohort>.tsv`` per cohort and
``univariate_cox_<cohort>.tsv`` per validation cohort."""

COHORT_FIGURES: tuple[str, ...] = (
    "km",
    "km_combined",
    "adjuvant",
    "forest",
    "time_roc",
    "calibration",
)
"""Per-cohort figures, written as ``<name>_<cohort>.png``."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``crlm_analysis`` subcommand."""
    parser = subparsers.add_parser(
        "crlm_analysis", help="CRLM survival analysis: fit on discovery, apply to validation"
    )
    parser.add_argument(
        "--cohort",
        nargs=4,
        action="append",
        required=True,
        metavar=("NAME", "ROLE", "FEATURES", "CLINICAL"),
        help="a cohort: name, role (discovery/validation), feature table (sof.tsv or a "
        "per-patient table), clinical table; repeat per cohort",
    )
    add_outcome_options(parser, "crlm")
    parser.add_argument(
        "--settings",
        default="{}",
        help="config section crlm as JSON text or a JSON file path (missing keys: defaults)",
    )
    parser.add_argument("--thresholds", default=None, help="infiltration thresholds JSON")
    parser.add_argument(
        "--bundle",
        default=None,
        help="a CRLM model bundle (config crlm.model): apply it to every cohort, fit nothing",
    )
    parser.add_argument("--out-dir", required=True)
    parser.set_defaults(func=run)


def parse_settings(text: str, time: str, event: str) -> CRLMSettings:
    """Settings from JSON text or a JSON file, plus the outcome columns."""
    try:
        values = json.loads(text) if text.lstrip().startswith("{") else read_json(text)
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(
            "--settings", f"is neither JSON text nor a readable JSON file ({err})", "fix it"
        ) from err
    return CRLMSettings.from_mapping({**values, "time": time, "event": event})


HORIZON_KEYS = ("horizon_months", "horizon_policy")
"""Analysis settings a bundle fixes: they change the outcome the score was fitted to."""


def bundled_model(folder: str, settings: CRLMSettings) -> tuple[CRLMModel, CRLMSettings]:
    """The bundle's model, and the settings with the bundle's horizon (logged when it wins)."""
    bundle = read_bundle(folder, "crlm")
    fitted = bundle.record["model"]
    horizon = {k: fitted["settings"][k] for k in HORIZON_KEYS}
    for key, value in horizon.items():
        if getattr(settings, key) != value:
            log.warning(
                "crlm.%s is %r but the model bundle was fitted with %r: the bundle's value is used",
                key,
                getattr(settings, key),
                value,
            )
    return CRLMModel.from_json(fitted), replace(settings, **horizon)


def run(args: argparse.Namespace) -> None:
    """Load the cohorts, run the analysis (fit, or apply a bundle), write everything."""
    settings = parse_settings(args.settings, args.time, args.event)
    thresholds = load_thresholds(args.thresholds) if args.thresholds else None
    model = None
    if args.bundle:
        model, settings = bundled_model(args.bundle, settings)
        log.info("applying the model bundle %s (nothing is fitted)", args.bundle)
    cohorts = [
        load_cohort(
            name,
            role,
            feats,
            clin,
            settings.time,
            settings.event,
            settings.features,
            outcome_optional=model is not None,
        )
        for name, role, feats, clin in args.cohort
    ]
    for c in cohorts:
        if not c.has_outcome:
            log.warning(
                "cohort %s has no outcome columns (%s, %s): scores and risk groups only",
                c.name,
                settings.time,
                settings.event,
            )
    result = run_crlm(cohorts, settings, thresholds, model)
    write_outputs(result, Path(args.out_dir))
    ex = result.tables["exclusions"]
    for name, sc in result.scored.items():
        log.info(
            "cohort %s: %d patients analysed, %d exclusion rows",
            name,
            len(sc.table),
            int((ex["cohort"] == name).sum()),
        )
    log.info("selected %s, cutoff %.4f", list(result.model.selected), result.model.cutoff)


def _clean(value: Any) -> Any:
    """NaN -> None, recursively, for JSON."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write_outputs(result: CRLMResult, out: Path) -> None:
    """Write tables, per-cohort Cox tables, model.json and figures."""
    from histoprog.plots import survival as plots

    for name in TABLES:
        if name in result.tables:
            write_tsv(out / f"{name}.tsv", result.tables[name])
    for cohort, table in result.multivariate.items():
        write_tsv(out / f"multivariate_{cohort}.tsv", table)
    for cohort, table in result.validation_univariate.items():
        write_tsv(out / f"univariate_cox_{cohort}.tsv", table)
    s = result.settings
    if result.discovery is not None:
        write_json(out / "model.json", _clean(result.model_json()))
        usable = result.tables["cutpoints"]
        usable = usable.loc[usable["status"] == "ok", "feature"].tolist()
        save_figure(
            out / "correlation_heatmap.png",
            plots.correlation_heatmap(
                result.tables["correlation"],
                usable,
                f"Pearson r of SOFs, discovery cohort {result.discovery} "
                f"(boxes: |r| > {s.collinearity_r:g})",
                s.collinearity_r,
            ),
            dpi=120,
        )
    by_key = {(g.cohort, g.analysis, g.subset): g for g in result.survival}
    for cohort in result.roc_curves:  # the cohorts with an outcome
        risk = by_key[(cohort, "sof_risk_group", "all")]
        scored = result.scored[cohort].table["patient_id"]
        n_left, why = plots.left_out(result.tables["exclusions"], cohort, scored)
        save_figure(
            out / f"km_{cohort}.png",
            plots.km_figure(
                risk.curves,
                risk.tests,
                f"{cohort}: SOF risk group (score >= {result.model.cutoff:.3g} = High)",
                n_total=len(scored) + n_left,
                left_out=why,
            ),
            dpi=120,
        )
        grade = by_key.get((cohort, "combined_grade", "all"))
        crs = by_key.get((cohort, "crs", "all"))
        panels = [
            (f"{cohort}: {g.analysis}", g.curves, g.tests) for g in (crs, grade) if g is not None
        ]
        fig = plots.km_panels(
            panels or [(f"{cohort}: no CRS columns", {}, pd.DataFrame())], ncols=2
        )
        save_figure(out / f"km_combined_{cohort}.png", fig, dpi=120)
        adj = [g for g in result.survival if g.cohort == cohort and g.analysis == "adjuvant"]
        panels = [(g.subset, g.curves, g.tests) for g in adj]
        title = f"{cohort}: adjuvant chemotherapy (no vs yes)"
        fig = plots.km_panels(
            panels or [(f"{cohort}: no chemotherapy columns", {}, pd.DataFrame())], title=title
        )
        save_figure(out / f"adjuvant_{cohort}.png", fig, dpi=110)
        save_figure(
            out / f"forest_{cohort}.png",
            plots.forest_plot(result.multivariate[cohort], f"{cohort}: multivariate Cox"),
            dpi=120,
        )
        save_figure(
            out / f"time_roc_{cohort}.png",
            plots.time_roc_figure(
                result.roc_curves[cohort], s.roc_times, f"{cohort}: time-dependent AUC"
            ),
            dpi=120,
        )
        save_figure(
            out / f"calibration_{cohort}.png",
            plots.calibration_figure(result.calibration[cohort], f"{cohort}: calibration"),
            dpi=120,
        )
