#!/usr/bin/env bash
# Set up the venv and run the whole test suite: lint, format check, workflow lint, pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
ruff check src tests benchmarks
ruff format --check src tests benchmarks
snakefmt --check Snakefile workflow/rules
python -m pytest -q "$@"
