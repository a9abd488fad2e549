#!/usr/bin/env bash
# Set up the venv and run the embedded demo end to end (generated cohorts -> results/,
# both analyses included: the default target), then build results/report.html (snakemake --report).
# Extra arguments go to snakemake (e.g. -n for a dry run, which builds no report).
# A full run appends its seconds (set-up, run, report) and the load to results/demo_timing.tsv,
# which scripts/readme_numbers.py reads.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
bash scripts/setup.sh
source .venv/bin/activate
set_up=$(date +%s)
CONFIG=(--configfile config/config.yaml config/demo.yaml)
snakemake --cores "${CORES:-2}" "${CONFIG[@]}" "$@"
for arg in "$@"; do
    if [[ $arg == -n || $arg == --dry-run || $arg == --dryrun ]]; then exit 0; fi
done
ran=$(date +%s)
snakemake "${CONFIG[@]}" --report results/report.html
done_at=$(date +%s)
timing=results/demo_timing.tsv
[ -f "$timing" ] || printf "date\tcores\tsetup_s\trun_s\treport_s\tload\n" > "$timing"
printf "%s\t%s\t%s\t%s\t%s\t%s\n" "$(date -u +%FT%TZ)" "${CORES:-2}" $((set_up - started)) \
    $((ran - set_up)) $((done_at - ran)) "$(cut -d' ' -f1-3 /proc/loadavg)" >> "$timing"
echo "demo: done; figures in results/report.html, every output in results/README.md"
