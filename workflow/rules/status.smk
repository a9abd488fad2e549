rule slide_status:
    """Which slides of a cohort failed, at which stage and why (written even when some did)."""
    input:
        tiles=lambda wc: cohort_slide_outputs(wc.cohort, "tiles.json"),
        stain=lambda wc: cohort_slide_outputs(wc.cohort, "stain.json"),
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
        slides=lambda wc: list(SLIDES[wc.cohort].index),
    shell:
        "python -m histoprog status --slides-dir results/{wildcards.cohort}/slides "
        "--slide-ids {params.slides} --stages tiles stain --out {output} > {log} 2>&1"
