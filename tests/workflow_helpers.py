"""Running the real workflow on generated cohorts in a temporary working directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from histoprog.synth.cohort import generate_cohort
from histoprog.synth.patches import write_patches
from histoprog.synth.slide_writer import write_slide
from histoprog.synth.spec import parse_spec

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def snakemake_env() -> dict[str, str]:
    """The test's environment with the venv's bin first on PATH (jobs call `python -m`)."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def snakemake(
    workdir: Path, *args: str, check: bool = True, timeout: int = 600
) -> subprocess.CompletedProcess[str]:
    """Run snakemake on the project's Snakefile in ``workdir`` with its config.yaml."""
    command = [
        str(BIN / "snakemake"),
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        *args,
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, env=snakemake_env(), timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed ({result.returncode}):\n{result.stderr[-6000:]}")
    return result


def write_config(workdir: Path, **overrides: object) -> Path:
    """The default config with the cohort sheet in ``workdir`` and ``overrides`` merged in."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["cohorts"] = str(workdir / "cohorts.tsv")
    config.update(overrides)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def write_cohort_sheet(workdir: Path, rows: list[dict[str, str]]) -> Path:
    """A cohort sheet with the given rows."""
    columns = ["cohort", "pipeline", "role", "slides", "clinical"]
    lines = ["\t".join(columns)] + ["\t".join(row.get(c, "") for c in columns) for row in rows]
    path = workdir / "cohorts.tsv"
    path.write_text("\n".join(lines) + "\n")
    return path


def cohort_row(name: str, role: str, data: Path, pipeline: str | None = None) -> dict[str, str]:
    """A cohort-sheet row for a generated cohort folder (its slides.tsv and clinical.tsv)."""
    row = {"cohort": name, "role": role, "slides": str(data / "slides.tsv"),
           "clinical": str(data / "clinical.tsv")}  # fmt: skip
    return row if pipeline is None else {**row, "pipeline": pipeline}


def mini_cohort(out: Path, name: str, n_patients: int, seed: int, **spec: object) -> Path:
    """Generate a small CRLM cohort (18 x 18 grids) with `histoprog synth`; its folder."""
    parsed = parse_spec(
        {
            "name": name,
            "n_patients": n_patients,
            "seed": seed,
            "id_prefix": f"{name}-",
            "grid": {"rows": [18, 18], "cols": [18, 18]},
            "texture_variants": 2,
            **spec,
        }
    )
    generate_cohort(parsed, out)
    return out


class BlankSource:
    """A pyramidal all-glass slide: bright, unsaturated pixels only."""

    n_levels = 3

    def __init__(self, size: int = 2048) -> None:
        self.size = size

    def level_size(self, level: int) -> tuple[int, int]:
        side = self.size // self.level_downsample(level)
        return side, side

    def level_downsample(self, level: int) -> int:
        return 2**level

    def iter_tiles(self, level: int, tile: int) -> Iterator[np.ndarray]:
        width, height = self.level_size(level)
        n = -(-width // tile) * -(-height // tile)
        for _ in range(n):
            yield np.full((tile, tile, 3), 242, dtype=np.uint8)


class DarkSource(BlankSource):
    """A fluorescence-like slide: dark background with bright blue nuclei (DAPI)."""

    def iter_tiles(self, level: int, tile: int) -> Iterator[np.ndarray]:
        yy, xx = np.mgrid[:tile, :tile]
        tile_rgb = np.full((tile, tile, 3), 8, dtype=np.uint8)
        tile_rgb[(yy % 32 - 16) ** 2 + (xx % 32 - 16) ** 2 < 36] = (40, 60, 220)
        for _ in super().iter_tiles(level, tile):
            yield tile_rgb


def write_dark_slide(path: Path) -> Path:
    """A generic TIFF with resolution whose pixels look like fluorescence."""
    return write_slide(path, DarkSource(), fmt="tiff", mpp=0.5, magnification=None)


def write_blank_slide(path: Path) -> Path:
    """A generic TIFF with resolution but no tissue."""
    return write_slide(path, BlankSource(), fmt="tiff", mpp=0.5, magnification=None)


PER_CLASS = ("STR", "LYM", "HEP", "MUC", "DEB")  # classes with an infiltration threshold


def load_default(key: str) -> dict:
    """A section of the default config.yaml."""
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())[key]


def features_cohort(folder: Path, name: str, seed: int, n: int = 150) -> dict[str, str]:
    """A features-only CRLM cohort (feature x is prognostic) as a cohort-sheet row."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=n)
    ids = [f"{name}{i}" for i in range(n)]
    t_event = 50 * rng.exponential(size=n) / np.exp(1.5 * (x > 0.5))
    t_censor = rng.uniform(30, 140, n)
    clinical = pd.DataFrame(
        {
            "patient_id": ids,
            "os_months": np.minimum(t_event, t_censor).round(2),
            "os_event": (t_event <= t_censor).astype(int),
            "crs": rng.integers(0, 6, n),
            "age": rng.integers(40, 80, n),
            "preop_chemo": rng.integers(0, 2, n),
            "adjuvant_chemo": rng.integers(0, 2, n),
        }
    )
    features = pd.DataFrame({"patient_id": ids, "feat_x": x, "feat_y": rng.normal(size=n)})
    clinical.to_csv(folder / f"{name}_clinical.tsv", sep="\t", index=False)
    features.to_csv(folder / f"{name}_features.tsv", sep="\t", index=False)
    return {
        "cohort": name,
        "role": "discovery" if name == "disc" else "validation",
        "features": str(folder / f"{name}_features.tsv"),
        "clinical": str(folder / f"{name}_clinical.tsv"),
    }


def tiny_config(work: Path, **overrides: object) -> None:
    """Config for a tiny run: 32 px tiles and patches, 1 epoch, fixed thresholds."""
    for name, class_set, seed in (("crc", "crc", 1), ("crlm", "crlm", 2), ("test", "crlm", 3)):
        write_patches(work / "patches" / name, class_set=class_set, n_per_class=6, seed=seed,
                      size=32, mpp=3.5, jpeg_quality=None)  # fmt: skip
    thresholds = work / "thresholds.json"
    thresholds.write_text(json.dumps({"thresholds": dict.fromkeys(PER_CLASS, 3.0)}))
    tissue = {
        **load_default("tissue"),
        "backbone": "resnet18",
        "weights": "none",
        "patches": {"crc": str(work / "patches/crc"), "crlm": str(work / "patches/crlm")},
        "test_patches": {"crc": None, "crlm": str(work / "patches/test")},
        "patch_stain": "none",
        "tile_px": 32,
        "epochs": 1,
        "batch_size": 16,
        "workers": 0,
        "device": "cpu",
        "gpu": 0,
    }
    tissue["classify"] = {**tissue["classify"], "workers": 0, "device": "cpu"}
    crlm = {
        **load_default("crlm"),
        "infiltration_thresholds": str(thresholds),
        "calibration_bootstrap_reps": 10,
        "clinical_factors": ["crs_high", "age"],
    }
    tile = {**load_default("tile"), "crlm": {"mpp": 3.5, "px": 32}}
    write_config(work, **{"tile": tile, "tissue": tissue, "crlm": crlm, **overrides})
