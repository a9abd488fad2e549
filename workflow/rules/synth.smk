# Generated cohorts (the demo): a cohort whose sheet row names a `synth_spec` is written by
# `histoprog synth cohort`, which produces exactly the slides its slide table lists.


rule synth_cohort:
    """Generate a synthetic cohort with planted truth (slides, clinical table, truth)."""
    input:
        spec=lambda wc: COHORTS.loc[wc.cohort, "synth_spec"],
    output:
        slides=directory("demo_data/{cohort}/slides"),
        clinical="demo_data/{cohort}/clinical.tsv",
        table="demo_data/{cohort}/slides.tsv",
        truth=directory("demo_data/{cohort}/truth"),
    log:
        "logs/synth_cohort/{cohort}.log",
    conda:
        "../../envs/slides.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(30),
    shell:
        "python -m histoprog synth cohort --spec {input.spec} --out demo_data/{wildcards.cohort} "
        "> {log} 2>&1"


rule synth_patches:
    """Generated labelled patch folders (ImageFolder layout) for the tissue classifier."""
    output:
        directory("demo_data/patches/{patch_set}"),
    log:
        "logs/synth_patches/{patch_set}.log",
    # training waits for these: start them before per-slide jobs
    priority: 10
    conda:
        "../../envs/slides.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(30),
    params:
        spec=lambda wc: config["synth_patches"][wc.patch_set],
    shell:
        "python -m histoprog synth patches --out {output} --set {params.spec[set]} "
        "--n-per-class {params.spec[n_per_class]} --seed {params.spec[seed]} > {log} 2>&1"
