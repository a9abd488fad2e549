"""Time the whole CRLM analysis (a script, not a test); target < 60 s on 2 cores.

1,000-patient discovery + 1,000-patient validation cohorts with all 21 SOF columns (three
prognostic), the Fong CRS variables, B = 1000 bootstrap calibration at 60 and 96 months;
tables only (``run_crlm``), then writing tables and figures (``write_outputs``).

    python benchmarks/bench_crlm_analysis.py [--n 1000] [--B 1000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from histoprog.analysis.crlm import CRLMSettings, run_crlm  # noqa: E402
from histoprog.analysis.features import Cohort, exclusions  # noqa: E402
from histoprog.commands.crlm_analysis import write_outputs  # noqa: E402
from histoprog.sof import sof_columns  # noqa: E402


def make_cohort(name: str, role: str, n: int, seed: int) -> Cohort:
    """SOF-like features (Dirichlet shares), CRS variables, chemo, Weibull times."""
    rng = np.random.default_rng(seed)
    cols = sof_columns()
    feats = pd.DataFrame(rng.dirichlet(np.ones(len(cols)), n) * 3, columns=cols)
    lp = (
        1.0 * (feats["overall_DEB"] > 0.15)
        + 0.9 * (feats["interaction_HEP"] > 0.12)
        - 0.9 * (feats["interaction_LYM"] > 0.16)
    )
    clin = pd.DataFrame(
        {
            "patient_id": [f"{name}-{i:04d}" for i in range(n)],
            "age": rng.integers(30, 85, n),
            "sex": rng.choice(["F", "M"], n),
            "node_positive": rng.integers(0, 2, n),
            "dfi_months": rng.exponential(18, n).round(1),
            "n_metastases": 1 + rng.poisson(0.7, n),
            "max_diameter_cm": rng.lognormal(1.15, 0.55, n).round(1),
            "cea": rng.lognormal(2.5, 2.0, n).round(1),
            "preop_chemo": rng.integers(0, 2, n),
            "adjuvant_chemo": rng.integers(0, 2, n),
        }
    )
    t_ev = 150 * (rng.exponential(size=n) / np.exp(lp)) ** (1 / 1.2)
    t_c = rng.uniform(12, 180, n)
    clin["os_months"] = np.maximum(np.minimum(t_ev, t_c), 0.01).round(2)
    clin["os_event"] = (t_ev <= t_c).astype(int)
    data = pd.concat([clin, feats], axis=1)
    return Cohort(name, role, data, tuple(cols), exclusions(name, [], "input", []))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--B", type=int, default=1000)
    args = ap.parse_args()
    cohorts = [
        make_cohort("discovery", "discovery", args.n, 1),
        make_cohort("validation", "validation", args.n, 2),
    ]
    settings = CRLMSettings(calibration_bootstrap_reps=args.B)
    t0 = time.perf_counter()
    result = run_crlm(cohorts, settings)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        write_outputs(result, Path(out))
    t2 = time.perf_counter()
    print(f"CRLM analysis, {args.n} + {args.n} patients, B = {args.B}")
    print(f"  run_crlm (all tables, model)       {t1 - t0:7.2f} s")
    print(f"  write_outputs (tables + figures)   {t2 - t1:7.2f} s")
    print(f"  total wall time                    {t2 - t0:7.2f} s (target < 60 s)")
    print(f"  selected: {list(result.model.selected)}")


if __name__ == "__main__":
    main()
