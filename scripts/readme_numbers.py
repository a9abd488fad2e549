"""Print the figures the README quotes about the demo, measured on a finished demo run.

Run from the project root after `bash scripts/demo.sh` (which writes
results/demo_timing.tsv):

    .venv/bin/python scripts/readme_numbers.py

Prints: the demo's planned jobs (a dry run of the demo config), the venv size, the demo's
wall time with and without set-up, the machine's load, the demo classifier's agreement with
the planted class grids and its largest confusion, and the median seconds per slide of each
per-slide stage (logs/benchmarks). The planted-truth test's figures are measured by
tests/test_workflow_crlm_planted.py and quoted from its docstring.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from histoprog.classes import CLASSES

PER_SLIDE_STAGES = ("tile", "stain", "classify", "sof", "geojson", "nuclei", "mil_score")
DEMO_CONFIG = ("config/config.yaml", "config/demo.yaml")


def grid_agreement(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, pd.DataFrame]:
    """Pooled share of tiles whose class equals the planted one, and the confusion table.

    Args:
        pairs: (planted grid, classified grid) per slide; -1 = no tile (left out).

    Returns:
        (agreement, confusion counts: rows the planted class, columns the classified one).
    """
    counts = np.zeros((len(CLASSES), len(CLASSES)), dtype=int)
    for truth, grid in pairs:
        both = (truth >= 0) & (grid >= 0)
        np.add.at(counts, (truth[both], grid[both]), 1)
    total = counts.sum()
    agreement = float(np.trace(counts) / total) if total else float("nan")
    return agreement, pd.DataFrame(counts, index=CLASSES, columns=CLASSES)


def largest_confusion(confusion: pd.DataFrame) -> tuple[str, str, float]:
    """The planted class, the class it is most read as, and the share of its tiles."""
    share = confusion.div(confusion.sum(axis=1).replace(0, np.nan), axis=0)
    off = share.to_numpy(copy=True)
    np.fill_diagonal(off, np.nan)
    i, j = np.unravel_index(np.nanargmax(off), off.shape)
    return str(confusion.index[i]), str(confusion.columns[j]), float(off[i, j])


def demo_pairs(root: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(planted, classified) grids of every classified demo slide with a planted grid."""
    pairs = []
    for truth in sorted(root.glob("demo_data/*/truth/grids/*.npy")):
        cohort = truth.parents[2].name
        grid = root / "results" / cohort / "slides" / truth.stem / "class_grid.npy"
        if grid.is_file():
            pairs.append((np.load(truth), np.load(grid)))
    return pairs


def stage_seconds(root: Path) -> dict[str, tuple[float, int]]:
    """Median wall seconds per slide and slide count of each per-slide stage."""
    out = {}
    for stage in PER_SLIDE_STAGES:
        files = list((root / "logs" / "benchmarks" / stage).glob("*/*.tsv"))
        if files:
            seconds = [float(pd.read_csv(f, sep="\t")["s"].iloc[0]) for f in files]
            out[stage] = (float(np.median(seconds)), len(files))
    return out


def planned_jobs(root: Path) -> str:
    """The total of a dry run of the demo config (the last count line of `-n rules`).

    ``--forceall`` so a finished demo still counts every job (a dry run lists only what
    is left to do).
    """
    command = [str(Path(sys.executable).parent / "snakemake"), "-n", "--forceall", "--quiet",
               "rules",
               "--configfile", *DEMO_CONFIG]  # fmt: skip
    done = subprocess.run(command, cwd=root, capture_output=True, text=True)
    totals = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("total")]
    return totals[-1] if totals else f"dry run failed: {done.stderr.strip()[-200:]}"


def venv_gb(root: Path) -> float:
    """Size of .venv in GB (10^9 bytes), files counted once."""
    size = sum(p.stat().st_size for p in (root / ".venv").rglob("*") if p.is_file())
    return size / 1e9


def main(argv: list[str] | None = None) -> int:
    """Print every figure, one per line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=".", help="project root with a finished demo")
    root = Path(parser.parse_args(argv).root).resolve()
    print(f"planned demo jobs: {planned_jobs(root)}")
    print(f"venv: {venv_gb(root):.1f} GB")
    timing = root / "results" / "demo_timing.tsv"
    if timing.is_file():
        t = pd.read_csv(timing, sep="\t").iloc[-1]
        print(
            f"demo wall time: {t['run_s'] / 60:.1f} min without set-up, "
            f"{(t['setup_s'] + t['run_s']) / 60:.1f} min with it (report {t['report_s']:.0f} s; "
            f"load at the end {t['load']})"
        )
    else:
        print("demo wall time: no results/demo_timing.tsv (run bash scripts/demo.sh)")
    print(f"load now: {os.getloadavg()[0]:.1f} (1 min), {os.cpu_count()} cores")
    pairs = demo_pairs(root)
    if pairs:
        agreement, confusion = grid_agreement(pairs)
        planted, read_as, share = largest_confusion(confusion)
        print(f"demo classifier vs planted grids: {agreement:.1%} of tiles ({len(pairs)} slides)")
        print(f"largest confusion: {share:.1%} of planted {planted} tiles read as {read_as}")
    for stage, (seconds, n) in stage_seconds(root).items():
        print(f"{stage}: median {seconds:.1f} s per slide ({n} slides)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
