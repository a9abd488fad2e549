"""`tile` on the generated 40k x 40k slide vs a bare OpenSlide read_region loop.

The baseline reads every grid tile at level 0 in row order (what a naive tiler, or a
tiler that decides blankness per full-resolution tile, has to do). Target: `tile` takes at
most 3 % of the loop's time. Usage: python benchmarks/bench_tile.py [--size 40000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import openslide
from common import large_slide, tile_args

from histoprog.cli import main as run_cli


def time_tile(slide: Path, out: Path) -> float:
    import histoprog.commands.tile  # noqa: F401  (imports are start-up, not tiling)

    started = time.perf_counter()
    code = run_cli(tile_args(slide, out))
    assert code == 0
    return time.perf_counter() - started


def time_read_loop(slide_path: Path, step: int = 224) -> tuple[float, int]:
    slide = openslide.OpenSlide(str(slide_path))
    width, height = slide.dimensions
    started = time.perf_counter()
    count = 0
    for y in range(0, height - step + 1, step):
        for x in range(0, width - step + 1, step):
            slide.read_region((x, y), 0, (step, step))
            count += 1
    slide.close()
    return time.perf_counter() - started, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=40_000)
    args = parser.parse_args()
    slide = large_slide(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        tile_s = time_tile(slide, Path(tmp))
    loop_s, n = time_read_loop(slide)
    print(f"slide: {slide.name}; grid tiles read by the loop: {n}")
    print(f"tile (whole stage after imports, incl. QC image and outputs): {tile_s:.2f} s")
    print(f"bare read_region loop at level 0:   {loop_s:.2f} s ({n / loop_s:.0f} tiles/s)")
    print(f"ratio tile / loop: {tile_s / loop_s:.2%} (target <= 3 %)")


if __name__ == "__main__":
    main()
