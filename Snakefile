# histoprog: H&E whole-slide images + clinical table -> prognostic models.
# Entry point: configuration, validation, rule files and the default target.

import sys
from pathlib import Path

# The library lives in src/; rules call it as `python -m histoprog <stage>`, both from the
# project venv and from per-rule conda envs (which carry only third-party packages).
_SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, _SRC)
# (braces are doubled because Snakemake formats the prefix like a shell command)
shell.prefix(
    "set -euo pipefail; export PYTHONPATH="
    + repr(_SRC)
    + "${{PYTHONPATH:+:$PYTHONPATH}}; "
)


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/synth.smk"
include: "workflow/rules/tile.smk"
include: "workflow/rules/stain.smk"
include: "workflow/rules/status.smk"
include: "workflow/rules/tissue.smk"
include: "workflow/rules/sof.smk"
include: "workflow/rules/geojson.smk"
include: "workflow/rules/crlm.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/hcc.smk"
include: "workflow/rules/models.smk"


onsuccess:
    report_failed_slides()


# What `snakemake` makes by default: for CRLM cohorts the slide status table, the tissue
# models, class grids, sof.tsv and, when a discovery cohort exists, the CRLM survival
# analysis (results/analysis/crlm/); for HCC cohorts mil.tsv (which lists failed slides
# with their reason) and, when a training cohort exists, the HCC analysis; the report's
# per-slide figures. Each rule file lists its own targets.
rule all:
    default_target: True
    input:
        STATUS_TARGETS,
        TISSUE_TARGETS,
        SOF_TARGETS,
        GEOJSON_TARGETS,
        CRLM_TARGETS,
        HCC_TARGETS,
        BUNDLE_TARGETS,
        REPORT_TARGETS,
