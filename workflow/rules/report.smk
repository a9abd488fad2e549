# Per-slide figures for `snakemake --report`: those of the first report.slides_per_cohort
# slides of each cohort are copied to results/{cohort}/report/ and shown there, so the
# report stays small for cohorts of thousands of slides (every slide's figures stay beside
# its other outputs under results/{cohort}/slides/).

# (MIL maps where the run has a MIL model: a training cohort or a bundle)
REPORT_TARGETS = [
    f"results/{cohort}/report/{figure}"
    for cohort in SLIDES
    for figure in ["tissue_mask"]
    + (
        ["stain_qc", "overlay", "sof"]
        if COHORTS.loc[cohort, "pipeline"] == "crlm"
        else ["nuclei_qc"] + (["mil_map"] if HCC_TRAIN or HCC_BUNDLE else [])
    )
    if report_slides(cohort)
]
# for f in params.files: slides/<slide>/<f>.png -> report/<f>/<slide>.png
REPORT_COPY = (
    "mkdir -p {params.dirs} && for slide in {params.slides}; do for f in {params.files}; do "
    f"cp {JOB_COHORT_SLIDES}/$slide/$f.png "
    "results/{wildcards.cohort}/report/$f/$slide.png; done; done > {log} 2>&1"
)


rule report_qc_sample:
    """Tissue-mask figures of the cohort's first slides, for the report."""
    input:
        masks=report_slide_figures("tissue_mask.png"),
    output:
        masks=report(
            directory("results/{cohort}/report/tissue_mask"),
            patterns=["{slide}.png"],
            caption="../report/tissue_mask.rst",
            category="Tile QC",
            subcategory="{cohort}",
        ),
    log:
        "logs/report_qc_sample/{cohort}.log",
    localrule: True
    conda:
        "../../envs/slides.yaml"
    threads: 1
    params:
        slides=lambda wc: report_slides(wc.cohort),
        files="tissue_mask",
        dirs=lambda wc, output: output.masks,
    shell:
        REPORT_COPY


rule report_crlm_sample:
    """Stain QC, class overlays and SOF figures of a CRLM cohort's first slides."""
    input:
        stain=report_slide_figures("stain_qc.png"),
        overlays=report_slide_figures("overlay.png"),
        sof=report_slide_figures("sof.png"),
    output:
        stain=report(
            directory("results/{cohort}/report/stain_qc"),
            patterns=["{slide}.png"],
            caption="../report/stain_qc.rst",
            category="Stain QC",
            subcategory="{cohort}",
        ),
        overlays=report(
            directory("results/{cohort}/report/overlay"),
            patterns=["{slide}.png"],
            caption="../report/tissue_overlay.rst",
            category="Tissue classes",
            subcategory="{cohort}",
        ),
        sof=report(
            directory("results/{cohort}/report/sof"),
            patterns=["{slide}.png"],
            caption="../report/crlm_sof.rst",
            category="Spatial features",
            subcategory="{cohort}",
        ),
    log:
        "logs/report_crlm_sample/{cohort}.log",
    localrule: True
    conda:
        "../../envs/stats.yaml"
    threads: 1
    params:
        slides=lambda wc: report_slides(wc.cohort),
        files="stain_qc overlay sof",
        dirs=lambda wc, output: f"{output.stain} {output.overlays} {output.sof}",
    shell:
        REPORT_COPY


rule report_hcc_sample:
    """Nuclei heat-map QC montages of an HCC cohort's first slides, for the report."""
    input:
        qc=report_slide_figures("nuclei_qc.png"),
    output:
        qc=report(
            directory("results/{cohort}/report/nuclei_qc"),
            patterns=["{slide}.png"],
            caption="../report/hcc_nuclei_qc.rst",
            category="Nuclei QC",
            subcategory="{cohort}",
        ),
    log:
        "logs/report_hcc_sample/{cohort}.log",
    localrule: True
    conda:
        "../../envs/slides.yaml"
    threads: 1
    params:
        slides=lambda wc: report_slides(wc.cohort),
        files="nuclei_qc",
        dirs=lambda wc, output: output.qc,
    shell:
        REPORT_COPY


rule report_mil_sample:
    """MIL maps of an HCC cohort's first slides, for the report."""
    input:
        maps=report_slide_figures("mil_map.png"),
    output:
        maps=report(
            directory("results/{cohort}/report/mil_map"),
            patterns=["{slide}.png"],
            caption="../report/hcc_mil_map.rst",
            category="MIL maps",
            subcategory="{cohort}",
        ),
    log:
        "logs/report_mil_sample/{cohort}.log",
    localrule: True
    conda:
        "../../envs/slides.yaml"
    threads: 1
    params:
        slides=lambda wc: report_slides(wc.cohort),
        files="mil_map",
        dirs=lambda wc, output: output.maps,
    shell:
        REPORT_COPY
