# Spatial organisation features (METHODS 4): infiltration thresholds fitted on the CRLM
# discovery cohort's class grids, per-slide SOFs, and the per-cohort sof.tsv.


CRLM_COHORTS = [
    c
    for c in COHORTS.index
    if COHORTS.loc[c, "pipeline"] == "crlm"
    and COHORTS.loc[c, "role"] in ("discovery", "validation")
]
CRLM_DISCOVERY = [c for c in CRLM_COHORTS if COHORTS.loc[c, "role"] == "discovery"]
CRLM_SLIDE_COHORTS = [c for c in CRLM_COHORTS if c in SLIDES]
REGION = config["crlm"]["region"]
REGION_ARGS = (
    f"--dilation {REGION['dilation']} --erosion {REGION['erosion']} "
    f"--min-component-tiles {REGION['min_component_tiles']} "
    f"--min-tumour-tiles {REGION['min_tumour_tiles']}"
)


rule gmm_thresholds:
    """Infiltrating/distal distance thresholds from the discovery slides (METHODS 4.4)."""
    input:
        grids=lambda wc: cohort_slide_outputs(CRLM_DISCOVERY[0], "class_grid.npy"),
        meta=lambda wc: cohort_slide_outputs(CRLM_DISCOVERY[0], "class_counts.json"),
    output:
        "results/analysis/crlm/infiltration_thresholds.json",
    log:
        "logs/gmm_thresholds/crlm.log",
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(4000),
        runtime=per_attempt(30),
    params:
        cohort=lambda wc: CRLM_DISCOVERY[0],
        slides=lambda wc: list(SLIDES[CRLM_DISCOVERY[0]].index),
        region=REGION_ARGS,
        seed=config["crlm"]["seed"],
    shell:
        "python -m histoprog gmm_thresholds --slides-dir results/{params.cohort}/slides "
        "--slide-ids {params.slides} --cohort {params.cohort} --seed {params.seed} "
        "{params.region} --out {output} > {log} 2>&1"


rule sof:
    """Spatial organisation features and figure of one slide (METHODS 4)."""
    input:
        grid="results/{cohort}/slides/{slide}/class_grid.npy",
        meta="results/{cohort}/slides/{slide}/class_counts.json",
        thresholds=infiltration_thresholds,
    output:
        record="results/{cohort}/slides/{slide}/sof.json",
        figure="results/{cohort}/slides/{slide}/sof.png",
    log:
        "logs/sof/{cohort}/{slide}.log",
    benchmark:
        "logs/benchmarks/sof/{cohort}/{slide}.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(1000),
        runtime=per_attempt(10),
    params:
        patient=lambda wc: slide_row(wc)["patient_id"],
        region=REGION_ARGS,
    shell:
        "python -m histoprog sof --grid {input.grid} --meta {input.meta} "
        "--thresholds {input.thresholds} --slide-id {wildcards.slide} "
        "--patient-id {params.patient:q} {params.region} --out {output.record} "
        "--out-figure {output.figure} > {log} 2>&1"


rule sof_table:
    """The cohort's sof.tsv: one row per slide, SOFs then QC columns (DESIGN contract)."""
    input:
        lambda wc: cohort_slide_outputs(wc.cohort, "sof.json"),
    output:
        "results/{cohort}/sof.tsv",
    log:
        "logs/sof_table/{cohort}.log",
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(1000),
        runtime=per_attempt(10),
    params:
        slides=lambda wc: list(SLIDES[wc.cohort].index),
    shell:
        "python -m histoprog sof_table --slides-dir results/{wildcards.cohort}/slides "
        "--slide-ids {params.slides} --out {output} > {log} 2>&1"
