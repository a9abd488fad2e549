from histoprog.status import failure_summary

# default targets: the status table of every CRLM cohort with slides
STATUS_TARGETS = [f"results/{c}/slide_status.tsv" for c in slide_cohorts("crlm")]

# per cohort with slides, the table the end-of-run failure summary reads
FAILURE_TABLES = {
    **{c: f"results/{c}/slide_status.tsv" for c in slide_cohorts("crlm")},
    **{c: f"results/{c}/mil.tsv" for c in slide_cohorts("hcc")},
}


def report_failed_slides():
    """End of a run: name the failed slides per cohort; fail the run when config says so."""
    lines, failed = failure_summary(FAILURE_TABLES)
    for line in lines:
        logger.warning(line)
    if failed and config["slides"]["fail_run_on_failed_slides"]:
        raise WorkflowError(
            f"{failed} slide(s) failed (listed above) and "
            "slides.fail_run_on_failed_slides is true; fix or remove them, or set the key "
            "to false to accept a cohort without them"
        )


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
