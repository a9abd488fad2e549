# the overrides of the tile stage's resolution and brightfield checks (config/README.md)
TILE_CHECK_FLAGS = " ".join(
    flag
    for flag, on in (
        ("--allow-unusual-mpp", config["slides"]["allow_unusual_mpp"]),
        ("--allow-non-he", config["tile"]["allow_non_he"]),
    )
    if on
)


# the stage's config flags, formatted once: snakemake formats each shell field per job
TILE_CONFIG_FLAGS = (
    f"--mpp-tolerance {config['tile']['mpp_tolerance']} "
    f"--lowres-mpp {config['tile']['lowres_mpp']} "
    + " ".join(
        f"--{key.replace('_', '-')} {config['tile']['blank'][key]}"
        for key in (
            "saturation_max",
            "value_min",
            "black_value_max",
            "max_blank_fraction",
        )
    )
)


rule tile:
    """Tissue mask, tile grid and tile table of one slide (METHODS 1)."""
    input:
        slide=slide_file,
    output:
        tiles=f"{SLIDE}/tiles.tsv",
        meta=f"{SLIDE}/tiles.json",
        mask=f"{SLIDE}/tissue_mask.png",
    log:
        "logs/tile/{cohort}/{slide}.log",
    benchmark:
        "logs/benchmarks/tile/{cohort}/{slide}.tsv"
    conda:
        "../../envs/slides.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(30),
    params:
        job=tile_job_args,
    shell:
        "python -m histoprog tile --slide {params.job[path]:q} --slide-id {wildcards.slide} "
        f"--path-as-written {{params.job[written]:q}} {TILE_CHECK_FLAGS} "
        "{params.job[sheet_mpp]} --target-mpp {params.job[mpp]} "
        f"--tile-px {{params.job[px]}} {TILE_CONFIG_FLAGS} "
        "--out-tiles {output.tiles} --out-meta {output.meta} --out-mask {output.mask} "
        "> {log} 2>&1"
