# Spatial organisation features (METHODS 4): infiltration thresholds fitted on the CRLM
# discovery cohort's class grids, per-slide SOFs, and the per-cohort sof.tsv.

REGION = config["crlm"]["region"]
REGION_ARGS = (
    f"--dilation {REGION['dilation']} --erosion {REGION['erosion']} "
    f"--min-component-tiles {REGION['min_component_tiles']} "
    f"--min-tumour-tiles {REGION['min_tumour_tiles']}"
)
# default targets: the sof.tsv of every CRLM cohort with slides
SOF_TARGETS = [f"results/{c}/sof.tsv" for c in slide_cohorts("crlm")]


rule gmm_thresholds:
    """Infiltrating/distal distance thresholds from the discovery slides (METHODS 4.4)."""
    input:
        grids=slide_outputs(CRLM_DISCOVERY[:1], "class_grid.npy"),
        meta=slide_outputs(CRLM_DISCOVERY[:1], "class_counts.json"),
    output:
        f"{CRLM_OUT}/infiltration_thresholds.json",
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
        slides=lambda wc: slide_ids(CRLM_DISCOVERY[0]),
        region=REGION_ARGS,
        seed=config["crlm"]["seed"],
    shell:
        f"python -m histoprog gmm_thresholds --slides-dir {cohort_slides('{params.cohort}')} "
        "--slide-ids {params.slides} --cohort {params.cohort} --seed {params.seed} "
        "{params.region} --out {output} > {log} 2>&1"


rule sof:
    """Spatial organisation features and figure of one slide (METHODS 4)."""
    input:
        grid=f"{SLIDE}/class_grid.npy",
        meta=f"{SLIDE}/class_counts.json",
        thresholds=infiltration_thresholds,
    output:
        record=f"{SLIDE}/sof.json",
        figure=f"{SLIDE}/sof.png",
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
        patient=slide_patient,
        region=REGION_ARGS,
    shell:
        "python -m histoprog sof --grid {input.grid} --meta {input.meta} "
        "--thresholds {input.thresholds} --slide-id {wildcards.slide} "
        "--patient-id {params.patient:q} {params.region} --out {output.record} "
        "--out-figure {output.figure} > {log} 2>&1"


rule sof_table:
    """The cohort's sof.tsv: one row per slide, SOFs then QC columns (contract in results/README.md)."""
    input:
        every_slide("sof.json"),
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
        slides=lambda wc: slide_ids(wc.cohort),
    shell:
        f"python -m histoprog sof_table --slides-dir {JOB_COHORT_SLIDES} "
        "--slide-ids {params.slides} --out {output} > {log} 2>&1"
