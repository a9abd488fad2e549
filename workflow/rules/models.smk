# Model bundles (README "Apply a published model at another site"): a discovery/training run
# exports each fitted model with the settings it was measured at; crlm.model / hcc.model
# apply one elsewhere (common.smk loads and checks it).

import json

from histoprog.bundle import locked_settings

MODELS_OUT = "results/models"
HCC_BUNDLE_FILES = {
    "unet.pt": "results/models/unet.pt",
    "mil.pt": "results/models/mil.pt",
    "mil_labels.tsv": "results/models/mil_labels.tsv",
} | _stain_target_files()
STAIN_TARGET_VALUES = {STAIN_TARGET: n for n in _stain_target_files()}

# default targets: the bundle of every model this run fits
BUNDLE_TARGETS = (
    [f"{MODELS_OUT}/crlm_model"] if CRLM_DISCOVERY and not CRLM_BUNDLE else []
) + ([f"{MODELS_OUT}/hcc_model"] if HCC_TRAIN and not HCC_BUNDLE else [])


rule crlm_model_bundle:
    """The fitted CRLM model with its classifier, thresholds and locked settings."""
    input:
        files=lambda wc: list(crlm_bundle_files().values()),
        model=f"{CRLM_OUT}/model.json",
    output:
        directory(f"{MODELS_OUT}/crlm_model"),
    log:
        "logs/model_bundle/crlm.log",
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(1000),
        runtime=per_attempt(10),
    params:
        files=lambda wc: _bundle_args(
            crlm_bundle_files(),
            {"training_cohorts": CRLM_DISCOVERY, **STAIN_TARGET_VALUES},
        ),
        locked=json.dumps(locked_settings(config, "crlm")),
    shell:
        "python -m histoprog export_model --kind crlm {params.files} "
        "--record model={input.model} --locked {params.locked:q} --out {output} > {log} 2>&1"


rule hcc_model_bundle:
    """The trained U-net and MIL model with its threshold, power and locked tile and bag settings."""
    input:
        list(HCC_BUNDLE_FILES.values()),
    output:
        directory(f"{MODELS_OUT}/hcc_model"),
    log:
        "logs/model_bundle/hcc.log",
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(1000),
        runtime=per_attempt(10),
    params:
        files=_bundle_args(
            HCC_BUNDLE_FILES,
            {
                "training_cohorts": HCC_TRAIN,
                "mil": {
                    k: HCC["mil"][k]
                    for k in ("threshold", "power", "tile_px_in", "bag_size")
                },
                **STAIN_TARGET_VALUES,
            },
        ),
        locked=json.dumps(locked_settings(config, "hcc")),
    shell:
        "python -m histoprog export_model --kind hcc {params.files} "
        "--locked {params.locked:q} --out {output} > {log} 2>&1"
