# The HCC branch (METHODS 6): nuclei U-net, per-slide bags with heat maps, MIL slide score,
# per-cohort mil.tsv and the RFS analysis in results/analysis/hcc/. Cohorts with
# pipeline hcc; role train cohorts train the MIL model, every HCC cohort is scored and
# analysed (per-cohort files; HCC_COHORTS and HCC_TRAIN are in common.smk).

import json

HCC = config["hcc"]
# the U-net sees tiles at the MIL input scale: tile.hcc (512 px at 0.25 mpp) resized to 224
HCC_INPUT_MPP = (
    config["tile"]["hcc"]["mpp"]
    * config["tile"]["hcc"]["px"]
    / HCC["mil"]["tile_px_in"]
)
# tables of the survival analyses (written when an HCC cohort has an outcome)
HCC_SURVIVAL_TABLES = (
    ["km_groups", "logrank", "univariate_cox", "time_roc"] if HCC_ANALYSED else []
)
# default targets: every HCC cohort's mil.tsv and the analysis (both need a training
# cohort or a model bundle)
HCC_TARGETS = (
    [f"results/{c}/mil.tsv" for c in HCC_COHORTS]
    + [f"{HCC_OUT}/{t}.tsv" for t in ["risk_scores"] + HCC_SURVIVAL_TABLES]
    if HCC_TRAIN or HCC_BUNDLE
    else []
)
# the models the slides are scored with: the bundle's, or those trained here
HCC_UNET = bundle_file(HCC_BUNDLE, "unet.pt", "results/models/unet.pt")
HCC_MIL = bundle_file(HCC_BUNDLE, "mil.pt", "results/models/mil.pt")


rule synth_nuclei:
    """Generated nucleus image/mask pairs (MoNuSeg-like) for the demo's U-net."""
    output:
        directory("demo_data/nuclei"),
    log:
        "logs/synth_nuclei/nuclei.log",
    conda:
        "../../envs/slides.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(30),
    params:
        spec=HCC["synth_nuclei"],
    shell:
        "python -m histoprog synth nuclei --out {output} --n-images {params.spec[n_images]} "
        "--size {params.spec[size]} --mpp {params.spec[mpp]} --seed {params.spec[seed]} "
        "> {log} 2>&1"


rule train_unet:
    """Nuclei U-net on image/mask pairs: Dice loss, best validation Dice (METHODS 6.1)."""
    input:
        nuclei=HCC["unet"]["nuclei_dir"],
    output:
        model="results/models/unet.pt",
        history="results/models/unet_history.tsv",
        curve=report(
            "results/models/unet_learning_curve.png",
            caption="../report/hcc_unet_curve.rst",
            category="HCC models",
            subcategory="nuclei U-net",
        ),
    log:
        "logs/train_unet/unet.log",
    benchmark:
        "logs/benchmarks/train_unet/unet.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: HCC["threads"] + HCC["unet"]["workers"]
    resources:
        mem_mb=per_attempt(8000),
        runtime=per_attempt(720),
        gpu=HCC["gpu"],
    params:
        cfg=HCC["unet"],
        target_mpp=HCC_INPUT_MPP,
        threads=HCC["threads"],
        device=HCC["device"],
        require=REQUIRE_WEIGHTS_ARG,
    shell:
        "python -m histoprog train_unet --nuclei {input.nuclei} --encoder {params.cfg[encoder]} "
        "--weights {params.cfg[weights]} {params.require} --epochs {params.cfg[epochs]} "
        "--crop {params.cfg[crop]} "
        "--crops-per-image {params.cfg[crops_per_image]} --batch-size {params.cfg[batch]} "
        "--lr {params.cfg[lr]} --val-fraction {params.cfg[val_fraction]} "
        "--image-mpp {params.cfg[image_mpp]} --target-mpp {params.target_mpp} "
        "--seed {params.cfg[seed]} --workers {params.cfg[workers]} --threads {params.threads} "
        "--device {params.device} --out-model {output.model} --out-history {output.history} "
        "--out-curve {output.curve} > {log} 2>&1"


rule nuclei:
    """A slide's bag: tiles at 224 px, Vahadane-normalised, with U-net heat maps (METHODS 6.2)."""
    input:
        slide=slide_file,
        tiles=f"{SLIDE}/tiles.tsv",
        meta=f"{SLIDE}/tiles.json",
        model=HCC_UNET,
    output:
        bag=f"{SLIDE}/nuclei.npz",
        meta=f"{SLIDE}/nuclei.json",
        qc=f"{SLIDE}/nuclei_qc.png",
    log:
        "logs/nuclei/{cohort}/{slide}.log",
    benchmark:
        "logs/benchmarks/nuclei/{cohort}/{slide}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: HCC["threads"] + HCC["nuclei"]["workers"]
    resources:
        mem_mb=per_attempt(6000),
        runtime=per_attempt(60),
        gpu=HCC["gpu"],
    params:
        slide=slide_path,
        px=HCC["mil"]["tile_px_in"],
        cfg=HCC["nuclei"],
        threads=HCC["threads"],
        device=HCC["device"],
        target=stain_target_arg(HCC_BUNDLE),
    shell:
        "python -m histoprog nuclei --slide {params.slide:q} --slide-id {wildcards.slide} "
        "--tiles {input.tiles} --tiles-meta {input.meta} --model {input.model} "
        "--tile-px {params.px} --bag-size {params.cfg[bag_size]} "
        "--fit-tiles {params.cfg[fit_tiles]} {params.target} --seed {params.cfg[seed]} "
        "--batch-size {params.cfg[batch]} --workers {params.cfg[workers]} "
        "--threads {params.threads} --device {params.device} --qc-tiles {params.cfg[qc_tiles]} "
        "--out-bag {output.bag} --out-meta {output.meta} --out-qc {output.qc} > {log} 2>&1"


rule train_mil:
    """MIL MobileNetV2 on the labelled bags of the training cohorts (METHODS 6.3-6.6)."""
    input:
        bags=slide_outputs(HCC_TRAIN, "nuclei.npz"),
        metas=slide_outputs(HCC_TRAIN, "nuclei.json"),
        clinical=[COHORTS.loc[c, "clinical"] for c in HCC_TRAIN],
    output:
        model="results/models/mil.pt",
        history="results/models/mil_history.tsv",
        labels="results/models/mil_labels.tsv",
        curve=report(
            "results/models/mil_learning_curve.png",
            caption="../report/hcc_mil_curve.rst",
            category="HCC models",
            subcategory="MIL MobileNetV2",
        ),
    log:
        "logs/train_mil/mil.log",
    benchmark:
        "logs/benchmarks/train_mil/mil.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: HCC["threads"]
    resources:
        mem_mb=per_attempt(8000),
        runtime=per_attempt(720),
        gpu=HCC["gpu"],
    params:
        cohorts=hcc_train_args,
        cfg=HCC["mil"],
        fit_bias="--fit-bias" if HCC["mil"]["fit_bias"] else "--no-fit-bias",
        time=config["clinical"]["hcc"]["time"],
        event=config["clinical"]["hcc"]["event"],
        threads=HCC["threads"],
        device=HCC["device"],
        require=REQUIRE_WEIGHTS_ARG,
    shell:
        "python -m histoprog train_mil {params.cohorts} --time {params.time} "
        "--event {params.event} --good-months {params.cfg[good_months]} "
        "--poor-months {params.cfg[poor_months]} --epochs {params.cfg[epochs]} "
        "--lr {params.cfg[lr]} --lr-step {params.cfg[lr_step]} --l2 {params.cfg[l2]} "
        "--threshold {params.cfg[threshold]} --power {params.cfg[power]} "
        "--bag-size {params.cfg[bag_size]} "
        "--val-fraction {params.cfg[val_fraction]} --weights {params.cfg[weights]} "
        "--class-weights {params.cfg[class_weights]} --batch-norm {params.cfg[batch_norm]} "
        "--bags-per-step {params.cfg[bags_per_step]} --sampling {params.cfg[sampling]} "
        "{params.fit_bias} --keep {params.cfg[keep]} "
        "{params.require} --seed {params.cfg[seed]} --threads {params.threads} --device {params.device} "
        "--out-model {output.model} --out-history {output.history} "
        "--out-curve {output.curve} --out-labels {output.labels} > {log} 2>&1"


rule mil_score:
    """A slide's MIL score S, risk group, tile logits and MIL map (METHODS 6.4)."""
    input:
        slide=slide_file,
        tiles_meta=f"{SLIDE}/tiles.json",
        bag=f"{SLIDE}/nuclei.npz",
        meta=f"{SLIDE}/nuclei.json",
        model=HCC_MIL,
    output:
        score=f"{SLIDE}/mil_score.json",
        tiles=f"{SLIDE}/mil_tiles.tsv",
        map=f"{SLIDE}/mil_map.png",
    log:
        "logs/mil_score/{cohort}/{slide}.log",
    benchmark:
        "logs/benchmarks/mil_score/{cohort}/{slide}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: HCC["threads"]
    resources:
        mem_mb=per_attempt(4000),
        runtime=per_attempt(30),
        gpu=HCC["gpu"],
    params:
        slide=slide_path,
        patient=slide_patient,
        batch=HCC["nuclei"]["batch"],
        threads=HCC["threads"],
        device=HCC["device"],
    shell:
        "python -m histoprog mil_score --slide {params.slide:q} --slide-id {wildcards.slide} "
        "--patient-id {params.patient:q} --tiles-meta {input.tiles_meta} --bag {input.bag} "
        "--nuclei-meta {input.meta} --model {input.model} --batch-size {params.batch} "
        "--threads {params.threads} --device {params.device} --out-score {output.score} "
        "--out-tiles {output.tiles} --out-map {output.map} > {log} 2>&1"


rule mil_table:
    """A cohort's mil.tsv: one row per slide (score, group, tiles, status)."""
    input:
        scores=every_slide("mil_score.json"),
    output:
        table="results/{cohort}/mil.tsv",
    log:
        "logs/mil_table/{cohort}.log",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(1000),
        runtime=per_attempt(10),
    shell:
        "python -m histoprog mil_table --scores {input.scores} --out {output.table} > {log} 2>&1"


rule hcc_analysis:
    """KM, Cox, time-dependent AUC, stratified KM and tile galleries (METHODS 6.7)."""
    input:
        mil=[f"results/{c}/mil.tsv" for c in HCC_COHORTS],
        clinical=[COHORTS.loc[c, "clinical"] for c in HCC_COHORTS],
        tiles=slide_outputs(HCC_COHORTS, "mil_tiles.tsv"),
        bags=slide_outputs(HCC_COHORTS, "nuclei.npz"),
    output:
        tables=expand(
            f"{HCC_OUT}/{{name}}.tsv",
            name=["risk_scores", "exclusions"] + HCC_SURVIVAL_TABLES,
        ),
        multivariate=expand(f"{HCC_OUT}/multivariate_{{c}}.tsv", c=HCC_ANALYSED),
        km=hcc_figures("km", "hcc_km.rst", "Kaplan-Meier"),
        forest=hcc_figures("forest", "hcc_forest.rst", "multivariate Cox"),
        roc=hcc_figures("time_roc", "hcc_time_roc.rst", "time-dependent AUC"),
        strata=hcc_figures("km_strata", "hcc_km_strata.rst", "clinical strata"),
        gallery=hcc_figures("gallery", "hcc_gallery.rst", "tile gallery", HCC_COHORTS),
    log:
        "logs/hcc_analysis/hcc.log",
    benchmark:
        "logs/benchmarks/hcc_analysis/hcc.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(4000),
        runtime=per_attempt(60),
    params:
        cohorts=hcc_analysis_args,
        time=config["clinical"]["hcc"]["time"],
        event=config["clinical"]["hcc"]["event"],
        threshold=HCC["mil"]["threshold"],
        settings=json.dumps(HCC["analysis"]),
        optional="--outcome-optional" if HCC_BUNDLE else "",
        out=lambda wc, output: os.path.dirname(output.tables[0]),
    shell:
        "python -m histoprog hcc_analysis {params.cohorts} --time {params.time} "
        "--event {params.event} --threshold {params.threshold} --settings {params.settings:q} "
        "{params.optional} "
        "--out-dir {params.out} > {log} 2>&1"
