# Tissue classifier (METHODS 3): two training stages, evaluation, per-slide classification.
# Stage 1 (crc): the 9 NCT-CRC-HE-100K classes from config tissue.crc_classes; stage 2 (crlm):
# the 7 CRLM classes (histoprog.classes.CLASSES, the class-grid contract), started from stage 1.

from histoprog.classes import CLASSES as CRLM_CLASSES

TISSUE = config["tissue"]
# classify settings, written into its shell command once (not a field per job)
CLASSIFY = TISSUE["classify"]
TISSUE_STAGES = ("crc", "crlm")
TISSUE_CLASSES = {"crc": list(TISSUE["crc_classes"]), "crlm": list(CRLM_CLASSES)}
# --weights per stage: imagenet, none, a file, or (crlm_weights: crc) the stage-1 model
TISSUE_WEIGHTS = {
    "crc": TISSUE["weights"],
    "crlm": (
        "results/models/tissue_crc.pt"
        if TISSUE["crlm_weights"] == "crc"
        else TISSUE["crlm_weights"]
    ),
}
# the file each stage depends on for its initial weights (none for imagenet/none)
TISSUE_WEIGHT_FILES = {
    stage: [] if spec in ("imagenet", "none", None) else spec
    for stage, spec in TISSUE_WEIGHTS.items()
}
# patch stain options: the slides' Macenko target (config stain:)
TISSUE_STAIN_ARGS = (
    f"--stain {TISSUE['patch_stain']} --alpha {config['stain']['alpha']} "
    f"--beta {config['stain']['beta']} --io {config['stain']['io']} {STAIN_TARGET_ARG}"
).rstrip()
# when a CRLM cohort has slides (and no bundle is applied): both models, evaluations of stages with a test folder
# and the class grids of its slides (a features-only run trains nothing)
TISSUE_TARGETS = (
    [f"results/models/tissue_{stage}.pt" for stage in TISSUE_STAGES]
    + [
        f"results/models/evaluation/tissue_{stage}/metrics.tsv"
        for stage in TISSUE_STAGES
        if TISSUE["test_patches"].get(stage)
    ]
    if slide_cohorts("crlm") and not CRLM_BUNDLE
    else []
) + slide_outputs(slide_cohorts("crlm"), "class_counts.json")
# the classifier the slides are classified with: the bundle's, or the one trained here
TISSUE_CLASSIFIER = bundle_file(
    CRLM_BUNDLE, CRLM_CLASSIFIER, "results/models/tissue_crlm.pt"
)


wildcard_constraints:
    stage="|".join(TISSUE_STAGES),


rule train_tissue:
    """Train one stage of the tissue classifier on an ImageFolder of patches (METHODS 3.3-3.4)."""
    input:
        patches=lambda wc: TISSUE["patches"][wc.stage],
        weights=lambda wc: TISSUE_WEIGHT_FILES[wc.stage],
    output:
        model="results/models/tissue_{stage}.pt",
        history="results/models/tissue_{stage}_history.tsv",
        curve=report(
            "results/models/tissue_{stage}_learning_curve.png",
            caption="../report/tissue_learning_curve.rst",
            category="Tissue classifier",
            subcategory="{stage}",
        ),
    log:
        "logs/train_tissue/{stage}.log",
    benchmark:
        "logs/benchmarks/train_tissue/{stage}.tsv"
    # the training chain is the critical path: start it before per-slide jobs
    priority: 10
    conda:
        "../../envs/torch.yaml"
    threads: TISSUE["threads"] + TISSUE["workers"]
    resources:
        mem_mb=per_attempt(16000),
        runtime=per_attempt(720),
        gpu=TISSUE["gpu"],
    params:
        classes=lambda wc: " ".join(TISSUE_CLASSES[wc.stage]),
        weights=lambda wc: TISSUE_WEIGHTS[wc.stage],
        require=REQUIRE_WEIGHTS_ARG,
        stain=TISSUE_STAIN_ARGS,
        tile_px=optional_arg("--tile-px", TISSUE["tile_px"]),
        jitter_filters=",".join(TISSUE["jitter"]["filters"]),
        cfg=TISSUE,
    shell:
        "python -m histoprog train_tissue --patches {input.patches} --classes {params.classes} "
        "--backbone {params.cfg[backbone]} --weights {params.weights} {params.require} "
        "{params.stain} "
        "{params.tile_px} --jitter-stain-sigma {params.cfg[jitter][stain_sigma]} "
        "--jitter-filters {params.jitter_filters} "
        "--jitter-jpeg-probability {params.cfg[jitter][jpeg_probability]} "
        "--epochs {params.cfg[epochs]} --patience {params.cfg[patience]} "
        "--batch-size {params.cfg[batch_size]} --lr {params.cfg[lr]} "
        "--lr-schedule {params.cfg[lr_schedule]} "
        "--momentum {params.cfg[momentum]} --val-fraction {params.cfg[val_fraction]} "
        "--seed {params.cfg[seed]} --workers {params.cfg[workers]} --threads {params.cfg[threads]} "
        "--device {params.cfg[device]} --out-model {output.model} "
        "--out-history {output.history} --out-curve {output.curve} > {log} 2>&1"


rule evaluate_tissue:
    """Accuracy, per-class metrics, ROC curves and confusion matrix on a test folder (METHODS 3.5)."""
    input:
        model="results/models/tissue_{stage}.pt",
        patches=lambda wc: TISSUE["test_patches"][wc.stage],
    output:
        metrics="results/models/evaluation/tissue_{stage}/metrics.tsv",
        summary="results/models/evaluation/tissue_{stage}/summary.json",
        confusion="results/models/evaluation/tissue_{stage}/confusion.tsv",
        roc=report(
            "results/models/evaluation/tissue_{stage}/roc.png",
            caption="../report/tissue_roc.rst",
            category="Tissue classifier",
            subcategory="{stage}",
        ),
        heatmap=report(
            "results/models/evaluation/tissue_{stage}/confusion.png",
            caption="../report/tissue_confusion.rst",
            category="Tissue classifier",
            subcategory="{stage}",
        ),
    log:
        "logs/evaluate_tissue/{stage}.log",
    conda:
        "../../envs/torch.yaml"
    threads: TISSUE["classify"]["threads"] + TISSUE["classify"]["workers"]
    resources:
        mem_mb=per_attempt(8000),
        runtime=per_attempt(120),
        gpu=TISSUE["gpu"],
    params:
        classes=lambda wc: " ".join(TISSUE_CLASSES[wc.stage]),
        stain=TISSUE_STAIN_ARGS,
        cfg=TISSUE["classify"],
    shell:
        "python -m histoprog evaluate_tissue --model {input.model} --patches {input.patches} "
        "--classes {params.classes} {params.stain} --batch-size {params.cfg[batch_size]} "
        "--workers {params.cfg[workers]} --threads {params.cfg[threads]} "
        "--device {params.cfg[device]} "
        "--out-metrics {output.metrics} --out-summary {output.summary} "
        "--out-confusion {output.confusion} --out-roc {output.roc} "
        "--out-heatmap {output.heatmap} > {log} 2>&1"


rule classify:
    """Tissue class of every tile of a slide: probabilities, class grid, counts, overlay."""
    input:
        slide=slide_file,
        tiles=f"{SLIDE}/tiles.tsv",
        meta=f"{SLIDE}/tiles.json",
        stain=f"{SLIDE}/stain.json",
        model=TISSUE_CLASSIFIER,
    output:
        classes=f"{SLIDE}/classes.tsv",
        grid=f"{SLIDE}/class_grid.npy",
        counts=f"{SLIDE}/class_counts.json",
        overlay=f"{SLIDE}/overlay.png",
    log:
        "logs/classify/{cohort}/{slide}.log",
    benchmark:
        "logs/benchmarks/classify/{cohort}/{slide}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: TISSUE["classify"]["threads"] + TISSUE["classify"]["workers"]
    resources:
        mem_mb=per_attempt(4000),
        runtime=per_attempt(60),
        gpu=TISSUE["gpu"],
    params:
        slide=slide_path,
        target=stain_target_arg(CRLM_BUNDLE),
    shell:
        "python -m histoprog classify --slide {params.slide:q} --slide-id {wildcards.slide} "
        "--tiles {input.tiles} --tiles-meta {input.meta} --stain {input.stain} "
        f"{{params.target}} --model {{input.model}} --batch-size {CLASSIFY['batch_size']} "
        f"--workers {CLASSIFY['workers']} --threads {CLASSIFY['threads']} "
        f"--device {CLASSIFY['device']} "
        f"--max-failed-fraction {CLASSIFY['max_failed_fraction']} "
        f"--thumbnail-px {CLASSIFY['thumbnail_px']} --out-classes {{output.classes}} "
        "--out-grid {output.grid} --out-counts {output.counts} "
        "--out-overlay {output.overlay} > {log} 2>&1"
