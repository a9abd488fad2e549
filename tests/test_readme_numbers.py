"""scripts/readme_numbers.py: the demo figures the README quotes, on a small results tree."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

from histoprog.classes import CLASSES

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("readme_numbers", ROOT / "scripts/readme_numbers.py")
numbers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(numbers)

STR, DEB, TUM = (CLASSES.index(c) for c in ("STR", "DEB", "TUM"))


def test_agreement_and_largest_confusion_pool_the_slides() -> None:
    truth = np.array([[STR, STR, STR, STR], [TUM, TUM, DEB, -1]])
    grid = np.array([[STR, DEB, DEB, STR], [TUM, TUM, DEB, TUM]])
    agreement, confusion = numbers.grid_agreement([(truth, grid), (truth, truth)])
    assert agreement == 12 / 14  # the -1 tile is not counted
    assert confusion.loc["STR", "DEB"] == 2 and confusion.to_numpy().sum() == 14
    assert numbers.largest_confusion(confusion) == ("STR", "DEB", 2 / 8)


def test_script_prints_every_figure_of_a_finished_tree(tmp_path: Path, capsys) -> None:
    grids = tmp_path / "demo_data/disc/truth/grids"
    grids.mkdir(parents=True)
    slide = tmp_path / "results/disc/slides/S1"
    slide.mkdir(parents=True)
    np.save(grids / "S1.npy", np.array([[STR, TUM]]))
    np.save(slide / "class_grid.npy", np.array([[DEB, TUM]]))
    bench = tmp_path / "logs/benchmarks/classify/disc"
    bench.mkdir(parents=True)
    pd.DataFrame({"s": [4.0]}).to_csv(bench / "S1.tsv", sep="\t", index=False)
    timing = pd.DataFrame({"setup_s": [60], "run_s": [600], "report_s": [30], "load": ["2.0"]})
    timing.to_csv(tmp_path / "results/demo_timing.tsv", sep="\t", index=False)
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv/f").write_bytes(b"x" * 1000)
    assert numbers.main(["--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "demo classifier vs planted grids: 50.0% of tiles (1 slides)" in out
    assert "largest confusion: 100.0% of planted STR tiles read as DEB" in out
    assert "10.0 min without set-up, 11.0 min with it" in out
    assert "classify: median 4.0 s per slide (1 slides)" in out
    assert "planned demo jobs: " in out
