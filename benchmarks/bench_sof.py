"""Time the SOFs of one 300 x 300 tile grid (a script, not a test); target < 1 s.

Also times a naive per-tile Python loop for the interaction feature on a 60 x 60 grid and
scales it by the tile count, as the baseline the vectorised code replaces.

    python benchmarks/bench_sof.py [--size 300] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from histoprog.sof import CLASSES, NON_TUMOUR_CLASSES, TISSUE_CLASSES, compute_sofs


def make_grid(size: int, seed: int = 0) -> np.ndarray:
    """A slide-like grid: a tumour disc, tissue around it, no-tile border."""
    rng = np.random.default_rng(seed)
    grid = rng.integers(1, len(CLASSES) - 1, size=(size, size))
    yy, xx = np.mgrid[:size, :size]
    grid[(yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 4) ** 2] = CLASSES.index("TUM")
    grid[: size // 20] = -1
    return grid.astype(np.int16)


def naive_interaction(grid: np.ndarray) -> dict[str, float]:
    """Per-tile loop over TUM tiles and their 8 neighbours (the baseline)."""
    tissue = {CLASSES.index(c) for c in TISSUE_CLASSES}
    tum = CLASSES.index("TUM")
    shares: dict[str, list[float]] = {c: [] for c in NON_TUMOUR_CLASSES}
    rows, cols = grid.shape
    for r in range(rows):
        for c in range(cols):
            if grid[r, c] != tum:
                continue
            neigh = [
                grid[r + dr, c + dc]
                for dr in (-1, 0, 1)
                for dc in (-1, 0, 1)
                if (dr or dc) and 0 <= r + dr < rows and 0 <= c + dc < cols
            ]
            neigh = [v for v in neigh if v in tissue]
            if not neigh:
                continue
            for name in NON_TUMOUR_CLASSES:
                shares[name].append(neigh.count(CLASSES.index(name)) / len(neigh))
    return {k: float(np.mean(v)) for k, v in shares.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    grid = make_grid(args.size)
    thresholds = dict.fromkeys(NON_TUMOUR_CLASSES, 3.0)
    compute_sofs(grid, thresholds)  # warm-up
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        sofs = compute_sofs(grid, thresholds)
        times.append(time.perf_counter() - t0)
    small = make_grid(60)
    t0 = time.perf_counter()
    naive = naive_interaction(small)
    naive_s = (time.perf_counter() - t0) * grid.size / small.size
    ref = compute_sofs(small, thresholds)
    assert all(abs(naive[c] - ref[f"interaction_{c}"]) < 1e-12 for c in NON_TUMOUR_CLASSES)
    best = min(times)
    print(f"SOFs of a {args.size} x {args.size} grid ({sofs['n_tissue']} tissue tiles)")
    print(f"  compute_sofs, best of {args.repeats}: {best * 1000:8.1f} ms (target < 1000 ms)")
    print(f"  naive per-tile interaction loop, scaled from 60 x 60: {naive_s * 1000:8.1f} ms")
    print(f"  speed-up over the naive interaction alone: {naive_s / best:6.1f}x")


if __name__ == "__main__":
    main()
