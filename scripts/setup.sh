#!/usr/bin/env bash
# Create the project venv (.venv) with the pinned stack. Idempotent: an existing venv whose
# requirements did not change is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; assert sys.version_info[:2] >= (3, 11)' 2>/dev/null; then
    echo "setup: histoprog needs Python >= 3.11 ($PYTHON is $("$PYTHON" --version 2>&1))" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    if ! "$PYTHON" -m venv .venv 2>/dev/null; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
            "$PYTHON" -m venv .venv
        else
            echo "setup: '$PYTHON -m venv' failed; install Debian's python3-venv package" >&2
            exit 1
        fi
    fi
fi
stamp=.venv/.histoprog-requirements
wanted=$(cat requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -r requirements-dev.txt
    .venv/bin/python -m pip install --quiet --no-deps -e .
    echo "$wanted" > "$stamp"
fi
echo "setup: .venv ready ($(.venv/bin/python -c 'import histoprog; print("histoprog", histoprog.__version__)'))"
