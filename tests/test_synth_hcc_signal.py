"""HCC planted-signal spec keys: ``risk_effect`` (hazard) and ``atypia_slope`` (image)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from histoprog.errors import InputError
from histoprog.synth.cohort import generate_cohort
from histoprog.synth.spec import parse_spec

SPEC = {"name": "h", "kind": "hcc", "n_patients": 8, "seed": 3}


def _truth(tmp_path: Path, **signal: float) -> tuple[pd.DataFrame, dict]:
    out = tmp_path / "_".join(f"{k}{v}" for k, v in signal.items())
    generate_cohort(parse_spec({**SPEC, **signal}), out, write_slides=False)
    patients = pd.read_csv(out / "truth" / "patients.tsv", sep="\t")
    return patients, json.loads((out / "truth" / "truth.json").read_text())


def test_defaults_and_stronger_signal(tmp_path: Path) -> None:
    base, truth = _truth(tmp_path)
    assert truth["model"]["coefficients"]["risk"] == 1.0
    assert base["atypia"].tolist() == pytest.approx(
        [1 / (1 + math.exp(-1.3 * r)) for r in base["risk"]]
    )
    strong, truth = _truth(tmp_path, risk_effect=2.0, atypia_slope=2.5)
    assert truth["model"]["coefficients"]["risk"] == 2.0
    assert strong["risk"].tolist() == base["risk"].tolist()  # same patients
    assert strong["linear_predictor"].tolist() != base["linear_predictor"].tolist()
    assert strong["atypia"].tolist() == pytest.approx(
        [1 / (1 + math.exp(-2.5 * r)) for r in base["risk"]]
    )


@pytest.mark.parametrize("key", ["risk_effect", "atypia_slope"])
def test_bad_signal_value_names_the_key(key: str) -> None:
    with pytest.raises(InputError, match=f"spec key '{key}'.*0..10"):
        parse_spec({**SPEC, key: -1})
