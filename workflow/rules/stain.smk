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
        cfg=config["stain"],
        target=stain_target_arg(CRLM_BUNDLE),
    shell:
        "python -m histoprog stain --slide {params.slide:q} --slide-id {wildcards.slide} "
        "--tiles {input.tiles} --tiles-meta {input.meta} --fit {params.cfg[fit]} "
        "--fit-tiles {params.cfg[fit_tiles]} {params.target} --alpha {params.cfg[alpha]} "
        "--beta {params.cfg[beta]} --io {params.cfg[io]} --qc-tiles {params.cfg[qc_tiles]} "
        "--seed {params.cfg[seed]} --out-params {output.params} --out-qc {output.qc} "
        "> {log} 2>&1"
