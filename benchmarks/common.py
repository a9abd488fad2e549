"""Helpers shared by the benchmarks: the large generated slide."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def large_slide(size: int = 40_000) -> Path:
    """Path of a generated slide of at least ``size`` x ``size`` px (made once, then reused)."""
    path = OUT / f"large_{size}.svs"
    if not path.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "histoprog",
                "synth",
                "large-slide",
                "--out",
                str(path),
                "--size-px",
                str(size),
            ],
            check=True,
        )
        print(f"generated {path.name} in {time.perf_counter() - started:.1f} s")
    return path


def tile_args(slide: Path, out: Path) -> list[str]:
    """``histoprog tile`` arguments for ``slide`` with outputs in ``out``."""
    return [
        "tile",
        "--slide",
        str(slide),
        "--slide-id",
        "large",
        "--out-tiles",
        str(out / "tiles.tsv"),
        "--out-meta",
        str(out / "tiles.json"),
        "--out-mask",
        str(out / "mask.png"),
    ]
