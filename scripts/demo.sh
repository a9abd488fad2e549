#!/usr/bin/env bash
# Set up the venv and run the embedded demo end to end (generated cohorts -> results/,
# both analyses included: the default target), then build results/report.html (snakemake --report).
# Extra arguments go to snakemake (e.g. -n for a dry run, which builds no report).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
CONFIG=(--configfile config/config.yaml config/demo.yaml)
snakemake --cores "${CORES:-2}" "${CONFIG[@]}" "$@"
for arg in "$@"; do
    if [[ $arg == -n || $arg == --dry-run || $arg == --dryrun ]]; then exit 0; fi
done
snakemake "${CONFIG[@]}" --report results/report.html
echo "demo: done; figures in results/report.html, every output in results/README.md"
