# default targets: the status table of every CRLM cohort with slides
STATUS_TARGETS = [f"results/{c}/slide_status.tsv" for c in slide_cohorts("crlm")]


rule slide_status:
    """Which slides of a cohort failed, at which stage and why (written even when some did)."""
    input:
        tiles=every_slide("tiles.json"),
        stain=every_slide("stain.json"),
    output:
        "results/{cohort}/slide_status.tsv",
    log:
        "logs/slide_status/{cohort}.log",
    conda:
        "../../envs/slides.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(500),
        runtime=per_attempt(10),
    params:
        slides=lambda wc: slide_ids(wc.cohort),
    shell:
        f"python -m histoprog status --slides-dir {JOB_COHORT_SLIDES} "
        "--slide-ids {params.slides} --stages tiles stain --out {output} > {log} 2>&1"
