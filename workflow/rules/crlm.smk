# The CRLM survival analysis (METHODS 5): fit on the discovery cohort (or take the model of
# the bundle crlm.model), apply to the validation cohorts; tables, model.json and figures in
# results/analysis/crlm/.

import json

# tables of the fit (not written when a model bundle is applied)
CRLM_FIT_TABLES = (
    []
    if CRLM_BUNDLE
    else [
        "cutpoints",
        "univariate_cox",
        "correlation",
        "cutoff_scan",
        "stepwise",
    ]
)
# tables of the survival analyses (written when a cohort has an outcome)
CRLM_SURVIVAL_TABLES = (
    []
    if not CRLM_ANALYSED
    else [
        "logrank",
        "km_groups",
        "time_roc",
        "time_roc_compare",
        "calibration",
        "table1",
        "followup",
        "associations",
    ]
)
CRLM_TABLES = CRLM_FIT_TABLES + ["risk_scores", "exclusions"] + CRLM_SURVIVAL_TABLES
CRLM_SETTINGS = {
    k: v
    for k, v in config["crlm"].items()
    if k not in ("region", "infiltration_thresholds", "model")
}

# the thresholds go into model.json; needed whenever a CRLM cohort has slides
CRLM_THRESHOLDS = [infiltration_thresholds()] if CRLM_SLIDE_COHORTS else []
# default target: the analysis (every table and figure) when a discovery cohort exists
# or a model bundle is applied
CRLM_TARGETS = [f"{CRLM_OUT}/risk_scores.tsv"] if CRLM_DISCOVERY or CRLM_BUNDLE else []
# the model applied (--bundle) or fitted (model.json, coefficients, correlation heatmap)
CRLM_BUNDLE_ARG = optional_arg("--bundle", CRLM_BUNDLE and CRLM_BUNDLE.folder)
CRLM_FITTED = (
    {}
    if CRLM_BUNDLE
    else dict(
        coefficients=f"{CRLM_OUT}/model_coefficients.tsv",
        model=f"{CRLM_OUT}/model.json",
        heatmap=report(
            f"{CRLM_OUT}/correlation_heatmap.png",
            caption="../report/crlm_correlation.rst",
            category="CRLM analysis",
            subcategory="feature selection",
        ),
    )
)


rule crlm_analysis:
    """Cutpoints, Cox, stepwise AIC, risk score and cutoff (or a bundle's), KM, ROC, calibration (METHODS 5)."""
    input:
        features=[crlm_features(c) for c in CRLM_COHORTS],
        clinical=[COHORTS.loc[c, "clinical"] for c in CRLM_COHORTS],
        thresholds=CRLM_THRESHOLDS,
    output:
        **CRLM_FITTED,
        tables=expand(f"{CRLM_OUT}/{{name}}.tsv", name=CRLM_TABLES),
        multivariate=expand(f"{CRLM_OUT}/multivariate_{{c}}.tsv", c=CRLM_ANALYSED),
        validation_univariate=[
            f"{CRLM_OUT}/univariate_cox_{c}.tsv"
            for c in CRLM_ANALYSED
            if c not in CRLM_DISCOVERY
        ],
        km=crlm_figures("km", "crlm_km.rst", "Kaplan-Meier"),
        km_combined=crlm_figures("km_combined", "crlm_km_combined.rst", "Kaplan-Meier"),
        adjuvant=crlm_figures("adjuvant", "crlm_adjuvant.rst", "adjuvant chemotherapy"),
        forest=crlm_figures("forest", "crlm_forest.rst", "multivariate Cox"),
        roc=crlm_figures("time_roc", "crlm_time_roc.rst", "time-dependent ROC"),
        calibration=crlm_figures("calibration", "crlm_calibration.rst", "calibration"),
    log:
        "logs/crlm_analysis/crlm.log",
    benchmark:
        "logs/benchmarks/crlm_analysis/crlm.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(4000),
        runtime=per_attempt(60),
    params:
        cohorts=crlm_cohort_args,
        thresholds=" ".join(f"--thresholds {t}" for t in CRLM_THRESHOLDS),
        time=config["clinical"]["crlm"]["time"],
        event=config["clinical"]["crlm"]["event"],
        settings=json.dumps(CRLM_SETTINGS),
        bundle=CRLM_BUNDLE_ARG,
        out=lambda wc, output: os.path.dirname(output.tables[0]),
    shell:
        "python -m histoprog crlm_analysis {params.cohorts} {params.thresholds} {params.bundle} "
        "--time {params.time} --event {params.event} --settings {params.settings:q} "
        "--out-dir {params.out} > {log} 2>&1"
