# the overrides of the tile stage's resolution and brightfield checks (config/README.md)
TILE_CHECK_FLAGS = " ".join(
    flag
    for flag, on in (
        ("--allow-unusual-mpp", config["slides"]["allow_unusual_mpp"]),
        ("--allow-non-he", config["tile"]["allow_non_he"]),
    )
    if on
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
        slide=slide_path,
        sheet_mpp=sheet_mpp_arg,
        mpp=lambda wc: tiling(wc)["mpp"],
        px=lambda wc: tiling(wc)["px"],
        tol=config["tile"]["mpp_tolerance"],
        lowres=config["tile"]["lowres_mpp"],
        blank=config["tile"]["blank"],
        written=lambda wc: slide_row(wc)["path_as_written"],
        checks=TILE_CHECK_FLAGS,
    shell:
        "python -m histoprog tile --slide {params.slide:q} --slide-id {wildcards.slide} "
        "--path-as-written {params.written:q} {params.checks} "
        "{params.sheet_mpp} --target-mpp {params.mpp} --tile-px {params.px} "
        "--mpp-tolerance {params.tol} --lowres-mpp {params.lowres} "
        "--saturation-max {params.blank[saturation_max]} "
        "--value-min {params.blank[value_min]} "
        "--black-value-max {params.blank[black_value_max]} "
        "--max-blank-fraction {params.blank[max_blank_fraction]} "
        "--out-tiles {output.tiles} --out-meta {output.meta} --out-mask {output.mask} "
        "> {log} 2>&1"
