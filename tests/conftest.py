"""Shared fixtures: ../shared test data (tests using it skip when absent) and the committed
R reference fixtures (tests using them fail when one is missing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
R_FIXTURES = ROOT / "tests" / "fixtures" / "r"

# The R-checked data sets and their covariates, as tests/fixtures/r/make_*.R write them;
# tests parametrise over these fixed lists, never over whichever files exist.
R_COVARIATES = {
    "lung": ("age", "sex", "ph.ecog", "ph.karno", "pat.karno", "meal.cal", "wt.loss"),
    "veteran": (
        "trt",
        "cell_smallcell",
        "cell_adeno",
        "cell_large",
        "karno",
        "diagtime",
        "age",
        "prior",
    ),
    "ties": ("b1", "b2", "x1", "x2", "g_b", "g_c"),
}

os.environ.setdefault("OMP_NUM_THREADS", "1")


def shared_file(*parts: str) -> Path:
    """A file under ../shared/data, or skip the test when it is not there."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not present (../shared is only beside the project in CI/dev)")
    return path


def r_fixture(name: str) -> Path:
    """A committed file under tests/fixtures/r; the calling test fails when it is missing."""
    path = R_FIXTURES / name
    if not path.is_file():
        pytest.fail(f"R fixture {path} is missing: regenerate it (tests/fixtures/r/README.md)")
    return path


def r_reference(name: str) -> tuple[pd.DataFrame, dict]:
    """An R-checked data set (`<name>.csv`) and R's values on it (`<name>.json`)."""
    ref = json.loads(r_fixture(f"{name}.json").read_text())
    assert tuple(ref["meta"]["covariates"]) == R_COVARIATES[name], f"{name}.json covariates"
    return pd.read_csv(r_fixture(f"{name}.csv")), ref


def packages_loaded(code: str, packages: set[str]) -> list[str]:
    """Which of the top-level ``packages`` a fresh interpreter has loaded after ``code``."""
    probe = (
        f"{code}\nimport json, sys\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & {packages!r})))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])
