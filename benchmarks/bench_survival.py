"""Time the survival chain on 1,000 generated patients (a script, not a test).

Cox fit on 20 features -> maxstat cutpoints of the 20 features -> stepwise AIC on the
binarised features -> timeROC with SE at 2 times (+ compare) -> calibration, B = 1000.

    python benchmarks/bench_survival.py [--n 1000] [--features 20] [--B 1000]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from histoprog.survival.calibration import calibrate  # noqa: E402
from histoprog.survival.cox import coxph  # noqa: E402
from histoprog.survival.maxstat import maxstat_cutpoints  # noqa: E402
from histoprog.survival.stepwise import step_aic  # noqa: E402
from histoprog.survival.timeroc import compare_auc, time_roc  # noqa: E402


def make_cohort(n: int, p: int, seed: int = 0) -> pd.DataFrame:
    """Synthetic cohort: p features, 4 of them prognostic, months of follow-up."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    beta = np.zeros(p)
    beta[:4] = [0.6, -0.4, 0.3, 0.2]
    t_event = rng.exponential(60 * np.exp(-x @ beta))
    t_cens = rng.uniform(12, 150, n)
    df = pd.DataFrame(x, columns=[f"f{j:02d}" for j in range(p)])
    df["time"] = np.round(np.minimum(t_event, t_cens), 1)
    df["event"] = (t_event <= t_cens).astype(int)
    return df


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--features", type=int, default=20)
    ap.add_argument("--B", type=int, default=1000)
    args = ap.parse_args()
    df = make_cohort(args.n, args.features)
    feats = [c for c in df.columns if c.startswith("f")]
    laps: dict[str, float] = {}
    t0 = time.perf_counter()

    def lap(name: str, start: float) -> float:
        now = time.perf_counter()
        laps[name] = now - start
        return now

    t = time.perf_counter()
    full = coxph(df, "time", "event", feats)
    t = lap("cox fit (20 features)", t)
    cuts = maxstat_cutpoints(df, "time", "event", feats)
    t = lap("maxstat cutpoints (20 features)", t)
    binary = df[["time", "event"]].copy()
    for f, c in zip(cuts["feature"], cuts["cutpoint"], strict=True):
        binary[f] = (df[f] > c).astype(int)
    step = step_aic(binary, "time", "event", feats)
    t = lap("stepwise AIC", t)
    score = step.fit.linear_predictor if step.fit is not None else full.linear_predictor
    binary["score"] = score
    roc_score = time_roc(df["time"], df["event"], score, [36, 60], name="score")
    roc_f0 = time_roc(df["time"], df["event"], df["f00"], [36, 60], name="f00")
    compare_auc(roc_score, roc_f0)
    t = lap("timeROC + SE at 2 times (2 markers) + compare", t)
    calibrate(binary, "time", "event", ["score"], 60, m=100, B=args.B, seed=1)
    t = lap(f"calibration B={args.B}", t)
    total = time.perf_counter() - t0
    print(f"survival chain on n={args.n}, {args.features} features")
    for k, v in laps.items():
        print(f"  {k:<48s} {v:7.2f} s")
    print(f"  {'total wall time':<48s} {total:7.2f} s")
    print(f"  selected: {list(step.selected)}")


if __name__ == "__main__":
    main()
