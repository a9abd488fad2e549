"""Benchmark: Macenko slide fit + batched transform vs torchstain per-tile normalisation.

Usage: python benchmarks/bench_macenko.py [--n-tiles 1000] [--threads 2] [--fit-tiles 200]

1,000 tiles of 224 x 224 are random crops (with flips and 90-degree rotations) of the
H&E images in ../shared/data/he-tiles/ (beside the checkout) when that folder exists, else synthetic
Beer-Lambert tiles. Both paths run on the same tiles with the same torch thread count.
Prints the throughput of each path, their ratio and the mean absolute colour difference
between the two outputs.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from torchstain.torch.normalizers.macenko import TorchMacenkoNormalizer

from histoprog.stain import TORCHSTAIN_BACKGROUND_INTENSITY, MacenkoNormalizer

HE_TILES = Path(__file__).resolve().parents[2] / "shared" / "data" / "he-tiles"
SIZE = 224


def real_tiles(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str] | None:
    from PIL import Image

    images = []
    for p in sorted(HE_TILES.glob("*")) if HE_TILES.is_dir() else []:
        try:
            im = np.asarray(Image.open(p).convert("RGB"))
        except OSError:
            continue
        if im.shape[0] >= SIZE and im.shape[1] >= SIZE:
            images.append(im)
    if not images:
        return None
    out = np.empty((n, SIZE, SIZE, 3), dtype=np.uint8)
    weights = np.array([im.shape[0] * im.shape[1] for im in images], dtype=float)
    origin = rng.choice(len(images), size=n, p=weights / weights.sum())
    for i in range(n):
        im = images[origin[i]]
        r = rng.integers(0, im.shape[0] - SIZE + 1)
        c = rng.integers(0, im.shape[1] - SIZE + 1)
        crop = np.rot90(im[r : r + SIZE, c : c + SIZE], k=int(rng.integers(4)))
        out[i] = crop[:, ::-1] if rng.random() < 0.5 else crop
    return out, origin, f"random crops of {len(images)} images in {HE_TILES}"


def synthetic_tiles(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
    w = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11]])
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    out = np.empty((n, SIZE, SIZE, 3), dtype=np.uint8)
    for i in range(n):
        c = rng.gamma(2.0, 0.35, (SIZE * SIZE, 2)) * rng.uniform(0.6, 1.4, 2)
        c[rng.random(SIZE * SIZE) < 0.3, 0] = 0
        rgb = 240 * np.exp(-(c @ w)) - 1
        out[i] = np.clip(np.rint(rgb), 0, 255).astype(np.uint8).reshape(SIZE, SIZE, 3)
    return out, np.zeros(n, dtype=int), "synthetic Beer-Lambert tiles (Ruifrok H&E)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-tiles", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fit-tiles", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--synthetic", action="store_true", help="synthetic tiles even if real exist")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    got = None if args.synthetic else real_tiles(args.n_tiles, rng)
    tiles, origin, source = got if got is not None else synthetic_tiles(args.n_tiles, rng)
    print(f"tiles: {tiles.shape[0]} x {SIZE}x{SIZE} ({source}); torch threads: {args.threads}")

    norm = MacenkoNormalizer(None, TORCHSTAIN_BACKGROUND_INTENSITY)
    fit_idx = rng.choice(len(tiles), size=min(args.fit_tiles, len(tiles)), replace=False)
    ts = TorchMacenkoNormalizer()
    per_tile = np.empty_like(tiles)
    ok = np.ones(len(tiles), dtype=bool)
    t_fit = t_slide = t_per = math.inf
    # The machine may be shared: best of --repeats for each path, alternating.
    for _ in range(args.repeats):
        # slide mode: one fit on up to --fit-tiles random tiles, then one batched transform
        t0 = time.perf_counter()
        params = norm.fit(tiles[i] for i in fit_idx)
        t1 = time.perf_counter()
        slide_out = norm.transform_batch(tiles, params)
        t2 = time.perf_counter()
        t_fit, t_slide = min(t_fit, t1 - t0), min(t_slide, t2 - t0)

        # paper mode: torchstain's own per-tile normalize
        t0 = time.perf_counter()
        with torch.no_grad():
            for i, tile in enumerate(tiles):
                try:
                    out, _, _ = ts.normalize(torch.from_numpy(tile).permute(2, 0, 1), stains=False)
                    arr = out.numpy()
                    ok[i] = arr.min() >= 0
                    per_tile[i] = arr if ok[i] else tile
                except RuntimeError:
                    ok[i] = False
                    per_tile[i] = tile
        t_per = min(t_per, time.perf_counter() - t0)

    n = len(tiles)
    mad = np.abs(slide_out[ok].astype(np.int16) - per_tile[ok]).mean()
    mad_input = np.abs(tiles[ok].astype(np.int16) - per_tile[ok]).mean()
    print(
        f"best of {args.repeats}: slide fit ({len(fit_idx)} tiles) {t_fit:.2f} s; "
        f"fit + batched transform {t_slide:.2f} s; torchstain per-tile {t_per:.2f} s"
    )
    print(f"slide fit + batched transform: {n / t_slide:10.1f} tiles/s")
    print(f"torchstain per-tile normalize: {n / t_per:10.1f} tiles/s ({(~ok).sum()} tiles failed)")
    print(f"speed-up: {t_per / t_slide:.1f}x")
    print(f"mean |slide - per-tile| over {ok.sum()} tiles: {mad:.2f} (0-255 RGB levels)")
    print(f"for scale, mean |input - per-tile|: {mad_input:.2f}")
    print(f"slide stain matrix (rows H, E): {np.round(params.matrix, 4).tolist()}")
    # The crops mix several differently stained images; a real slide has one staining.
    # Fit each source image as its own "slide" for the realistic difference.
    for k in np.unique(origin):
        sel = np.flatnonzero((origin == k) & ok)
        p_k = norm.fit(tiles[i] for i in sel[: args.fit_tiles])
        out_k = norm.transform_batch(tiles[sel], p_k)
        d_k = np.abs(out_k.astype(np.int16) - per_tile[sel]).mean()
        print(f"  source image {k}: {sel.size:4d} tiles, mean |slide - per-tile| = {d_k:.2f}")


if __name__ == "__main__":
    main()
