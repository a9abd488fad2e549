"""Peak memory (RSS) of `tile` + `stain` on the generated 40k x 40k slide.

Each stage runs as its own process (as in the workflow); its peak RSS comes from
os.wait4. The baseline is the size of the slide's level 0 as an RGB array, which a tiler
that loads the slide would hold. Target: each stage under 2 GB.
Usage: python benchmarks/bench_memory.py [--size 40000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import openslide
from common import large_slide, tile_args

GB = 1024**3


def peak_rss(args: list[str]) -> int:
    """Run ``python -m histoprog <args>`` and return its peak RSS in bytes."""
    proc = subprocess.Popen([sys.executable, "-m", "histoprog", *args])
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"histoprog {args[0]} failed with {proc.returncode}")
    return usage.ru_maxrss * 1024  # kilobytes on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=40_000)
    args = parser.parse_args()
    slide = large_slide(args.size)
    width, height = openslide.OpenSlide(str(slide)).dimensions
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        tile = peak_rss(tile_args(slide, out))
        stain = peak_rss(
            [
                "stain",
                "--slide",
                str(slide),
                "--slide-id",
                "large",
                "--tiles",
                str(out / "tiles.tsv"),
                "--tiles-meta",
                str(out / "tiles.json"),
                "--out-params",
                str(out / "stain.json"),
                "--out-qc",
                str(out / "stain.png"),
            ]
        )
    baseline = width * height * 3
    print(f"slide {slide.name}: {width} x {height} px; level 0 as RGB = {baseline / GB:.2f} GB")
    print(f"peak RSS tile:  {tile / GB:.3f} GB ({tile / baseline:.1%} of level 0)")
    print(f"peak RSS stain: {stain / GB:.3f} GB ({stain / baseline:.1%} of level 0)")
    print(f"max of the two vs the 2 GB budget: {max(tile, stain) / (2 * GB):.1%}")


if __name__ == "__main__":
    main()
