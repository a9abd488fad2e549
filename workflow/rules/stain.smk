# config stain, written into the shell command once (not a field per job)
STAIN = config["stain"]


rule stain:
    """Slide-level Macenko stain parameters and a before/after QC image (METHODS 2)."""
    input:
        slide=slide_file,
        tiles=f"{SLIDE}/tiles.tsv",
        meta=f"{SLIDE}/tiles.json",
    output:
        params=f"{SLIDE}/stain.json",
        qc=f"{SLIDE}/stain_qc.png",
    log:
        "logs/stain/{cohort}/{slide}.log",
    benchmark:
        "logs/benchmarks/stain/{cohort}/{slide}.tsv"
    conda:
        "../../envs/slides.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(30),
    params:
        slide=slide_path,
        target=stain_target_arg(CRLM_BUNDLE),
    shell:
        "python -m histoprog stain --slide {params.slide:q} --slide-id {wildcards.slide} "
        f"--tiles {{input.tiles}} --tiles-meta {{input.meta}} --fit {STAIN['fit']} "
        f"--fit-tiles {STAIN['fit_tiles']} {{params.target}} --alpha {STAIN['alpha']} "
        f"--beta {STAIN['beta']} --io {STAIN['io']} --qc-tiles {STAIN['qc_tiles']} "
        f"--seed {STAIN['seed']} --out-params {{output.params}} --out-qc {{output.qc}} "
        "> {log} 2>&1"
