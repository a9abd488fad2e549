#!/usr/bin/env bash
# Set up the venv and run the embedded demo end to end (generated cohorts -> results/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
snakemake --cores "${CORES:-2}" --configfile config/config.yaml config/demo.yaml "$@"
echo "demo: done; see results/README.md for what each output is"
