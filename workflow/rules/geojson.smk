# QuPath GeoJSON per slide (annotations.geojson; contract in results/README.md): CRLM
# slides after classify (tiles by tissue class, the tumour region, infiltrating/distal
# zones), HCC slides after mil_score (bag tiles with their MIL logits). Uses REGION_ARGS
# from sof.smk; the HCC rule runs only where a training cohort or bundle gives a MIL model.

# default targets: every slide of every CRLM cohort, and of every HCC cohort when a
# training cohort or a model bundle gives a MIL model (as for HCC_TARGETS)
GEOJSON_TARGETS = slide_outputs(slide_cohorts("crlm"), "annotations.geojson") + (
    slide_outputs(HCC_COHORTS, "annotations.geojson") if HCC_TRAIN or HCC_BUNDLE else []
)
# the infiltration thresholds (zones) when the run has them (infiltration_thresholds in
# common.smk decides where they come from); without them the files have no zones
try:
    GEOJSON_THRESHOLDS = infiltration_thresholds()
except WorkflowError:
    GEOJSON_THRESHOLDS = []


rule geojson:
    """QuPath GeoJSON of a CRLM slide: classified tiles, tumour region, zones."""
    input:
        classes=f"{SLIDE}/classes.tsv",
        grid=f"{SLIDE}/class_grid.npy",
        meta=f"{SLIDE}/class_counts.json",
        tiles_meta=f"{SLIDE}/tiles.json",
        thresholds=GEOJSON_THRESHOLDS,
    output:
        f"{SLIDE}/annotations.geojson",
    log:
        "logs/geojson/{cohort}/{slide}.log",
    benchmark:
        "logs/benchmarks/geojson/{cohort}/{slide}.tsv"
    wildcard_constraints:
        cohort="|".join(slide_cohorts("crlm")) or "NO_COHORT",
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(1000),
        runtime=per_attempt(10),
    params:
        region=REGION_ARGS,
        thresholds=optional_arg("--thresholds", GEOJSON_THRESHOLDS or None),
    shell:
        "python -m histoprog geojson --pipeline crlm --slide-id {wildcards.slide} "
        "--classes {input.classes} --grid {input.grid} --meta {input.meta} "
        "--tiles-meta {input.tiles_meta} {params.thresholds} {params.region} "
        "--out {output} > {log} 2>&1"


rule geojson_hcc:
    """QuPath GeoJSON of an HCC slide: the MIL bag's tiles with their logits."""
    input:
        tiles=f"{SLIDE}/mil_tiles.tsv",
        score=f"{SLIDE}/mil_score.json",
        tiles_meta=f"{SLIDE}/tiles.json",
    output:
        f"{SLIDE}/annotations.geojson",
    log:
        "logs/geojson/{cohort}/{slide}.log",
    benchmark:
        "logs/benchmarks/geojson/{cohort}/{slide}.tsv"
    wildcard_constraints:
        cohort="|".join(HCC_COHORTS) or "NO_COHORT",
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(1000),
        runtime=per_attempt(10),
    shell:
        "python -m histoprog geojson --pipeline hcc --slide-id {wildcards.slide} "
        "--mil-tiles {input.tiles} --mil-score {input.score} "
        "--tiles-meta {input.tiles_meta} --out {output} > {log} 2>&1"
