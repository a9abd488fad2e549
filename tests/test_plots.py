"""The per-slide QC pictures and the Kaplan-Meier figures: sizes, marks, ticks, legible text."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image

from histoprog import tiling
from histoprog.analysis.groups import group_survival
from histoprog.analysis.outcome import Outcome
from histoprog.classes import CLASSES
from histoprog.plots.overlay import class_overlay
from histoprog.plots.slide_view import FOOTER_PX, scale_bar_um
from histoprog.plots.survival import km_axes, km_figure, left_out

GREEN = np.array([0, 200, 80])


def _draw(fig: Figure) -> None:
    """Render ``fig`` with Agg (layout and text extents as in the saved PNG)."""
    FigureCanvasAgg(fig).draw()


def _inside(fig: Figure, artist: object) -> bool:
    """Whether the drawn artist lies within the figure."""
    box = artist.get_window_extent()
    return box.x0 >= 0 and box.y0 >= 0 and box.x1 <= fig.bbox.x1 and box.y1 <= fig.bbox.y1


# ----------------------------------------------------------------------------- tissue mask


def _mask_case() -> tuple[np.ndarray, np.ndarray, tiling.TileGrid, pd.DataFrame]:
    """A 60 x 40 px view (tiles of 10 px), tissue on the left half; two kept tiles."""
    rgb = np.full((60, 40, 3), 200, dtype=np.uint8)
    tissue = np.zeros((60, 40), dtype=bool)
    tissue[:, :20] = True
    grid = tiling.TileGrid(origin_x=0, origin_y=0, step=40, rows=6, cols=4)  # scale 4
    table = pd.DataFrame({"row": [0, 3], "col": [0, 1]})
    return rgb, tissue, grid, table


def test_mask_thumbnail_is_enlarged_with_a_visible_tint_and_outlines() -> None:
    rgb, tissue, grid, table = _mask_case()
    image = tiling.mask_thumbnail(rgb, tissue, grid, 4.0, table, max_px=800)
    zoom = 800 // 60  # 13: each panel 780 x 520, a tile 130 px
    width = 40 * zoom
    header = image.size[1] - 60 * zoom
    assert image.size == (2 * width + 12, 60 * zoom + header) and 0 < header < 100
    px = np.asarray(image).astype(int)
    right = px[header:, width + 12 :]
    kept = right[65, 65]  # inside tile (0, 0)
    dropped = right[65, 130 + 65]  # tissue, tile (0, 1) not kept
    assert (dropped == 200).all()
    assert np.abs(kept - (0.55 * 200 + 0.45 * GREEN)).max() <= 1  # green by 45 %
    assert np.abs(kept - dropped).max() >= 50  # told apart at a glance
    outline = right[65, 130]  # kept tile's right edge: dark green
    assert outline[1] > outline[0] + 50 and outline[1] < 150
    assert (right[65, 2 * 130] == 150).all()  # grid line between two dropped tiles


def test_mask_thumbnail_title_is_not_cut_off() -> None:
    """The legend line wraps within its panel (was cut off at "kept tiles (gr")."""
    rgb, tissue, grid, table = _mask_case()
    image = tiling.mask_thumbnail(rgb, tissue, grid, 4.0, table, max_px=200)
    header = image.size[1] - 60 * 3
    text = np.asarray(image)[:header].min(axis=2) < 128
    assert text[:, image.size[0] // 2 :].any()
    assert not text[:, -4:].any()  # nothing runs into the right edge
    assert header > 8 + 2 * 20  # wrapped over several lines at this width


def _bar_px(image: Image.Image) -> int:
    """Length (px) of the black scale bar in the picture's footer strip."""
    footer = np.asarray(image)[-FOOTER_PX:].min(axis=2) < 40
    row = footer[10 + 3]  # the bar's middle row (drawn 10 px below the picture)
    start = int(np.argmax(row))
    return int(np.argmin(row[start:]))  # the run of black up to the gap before its label


def test_slide_pictures_carry_a_scale_bar() -> None:
    """Tissue-mask QC and class overlay: a bar of 1, 2 or 5 x 10^k um below the picture."""
    rgb, tissue, grid, table = _mask_case()
    plain = tiling.mask_thumbnail(rgb, tissue, grid, 4.0, table, max_px=800)
    image = tiling.mask_thumbnail(rgb, tissue, grid, 4.0, table, max_px=800, mpp=0.5)
    assert image.size == (plain.width, plain.height + FOOTER_PX)
    um_per_px = 0.5 * 4.0 / 13  # level-0 mpp x level-0 px per view px / zoom
    bar_um = scale_bar_um(um_per_px, 40 * 13 / 3)  # at most a third of a panel
    assert bar_um == 20
    assert abs(_bar_px(image) - bar_um / um_per_px) <= 1
    thumb = np.full((40, 60, 3), 200, dtype=np.uint8)
    grid_ = np.zeros((2, 3), dtype=np.int8)
    overlay = class_overlay(
        thumb, (0, 0), 10.0, grid_, (0, 0), 200, CLASSES, {}, "s", 540, mpp=0.25
    )
    um_per_px = 0.25 * 10.0 * 60 / 540
    assert abs(_bar_px(overlay) - scale_bar_um(um_per_px, 540 / 4) / um_per_px) <= 1


# ----------------------------------------------------------------------------- Kaplan-Meier


@pytest.fixture(scope="module")
def survival() -> tuple[pd.DataFrame, object]:
    rng = np.random.default_rng(3)
    n = 40
    high = rng.uniform(size=n) > 0.5
    t_event = 40 * rng.exponential(size=n) / np.where(high, 3.0, 1.0)
    t_censor = rng.uniform(20, 110, n)
    table = pd.DataFrame(
        {
            "patient_id": [f"p{i}" for i in range(n)],
            "months": np.minimum(t_event, t_censor).round(1),
            "dead": (t_event <= t_censor).astype(int),
            "group": np.where(high, "High", "Low"),
        }
    )
    groups = group_survival(
        table.iloc[1:], Outcome("months", "dead"), "group", ["Low", "High"], 24.0,
        cohort="c", analysis="risk",
    )  # fmt: skip
    return table.iloc[1:], groups


def test_km_marks_censored_times_and_ticks_at_the_risk_table(survival) -> None:
    table, groups = survival
    fig = km_figure(groups.curves, groups.tests, "c: risk group", risk_step=24.0)
    ax, ax_risk = fig.axes
    marks = [line for line in ax.get_lines() if line.get_marker() == "+"]
    assert len(marks) == len(groups.curves) == 2
    for line, name in zip(marks, ["Low", "High"], strict=True):
        rows = table[(table["group"] == name) & (table["dead"] == 0)]
        assert isinstance(line, Line2D) and line.get_linestyle() == "None"
        assert np.allclose(np.sort(line.get_xdata()), np.unique(rows["months"]))
    columns = sorted({t.get_position()[0] for t in ax_risk.texts if t.get_text().isdigit()})
    assert list(ax.get_xticks()) == list(ax_risk.get_xticks()) == columns
    assert columns == [0.0, 24.0, 48.0, 72.0, 96.0][: len(columns)] and len(columns) >= 3
    assert ax.get_xlim() == ax_risk.get_xlim()
    assert ax.get_xlabel() == "Time (months)"


def test_km_says_how_many_of_the_cohort_are_plotted(survival) -> None:
    _, groups = survival
    fig = km_figure(
        groups.curves, groups.tests, "c: risk group", time_label="Time since surgery (months)",
        n_total=40, left_out="no slide with status ok",
    )  # fmt: skip
    ax = fig.axes[0]
    assert ax.get_title(loc="left").splitlines() == [
        "c: risk group",
        "n = 39 of 40 (1 left out: no slide with status ok)",
    ]
    assert ax.get_xlabel() == "Time since surgery (months)"
    fig = km_figure(groups.curves, groups.tests, "c", n_total=39)
    assert fig.axes[0].get_title(loc="left").splitlines() == ["c", "n = 39"]
    fig = km_figure(groups.curves, groups.tests, "c")
    assert fig.axes[0].get_title(loc="left") == "c"


def test_km_long_title_is_wrapped_inside_the_figure(survival) -> None:
    _, groups = survival
    title = "cohort_with_a_long_name: SOF risk group (score >= 0.123 = High) " * 3
    fig = km_figure(groups.curves, groups.tests, title, n_total=45, left_out="x " * 40)
    _draw(fig)
    ax = fig.axes[0]
    assert _inside(fig, ax._left_title)
    assert len(ax.get_title(loc="left").splitlines()) >= 4


def test_km_axes_without_a_risk_table_still_ticks_at_the_risk_times(survival) -> None:
    _, groups = survival
    ax = Figure().subplots()
    km_axes(ax, None, groups.curves, risk_step=12.0)
    ticks = ax.get_xticks()
    assert ticks[0] == 0 and np.allclose(np.diff(ticks), 12.0)


def test_left_out_counts_unplotted_patients_and_their_reasons() -> None:
    excl = pd.DataFrame(
        {
            "cohort": ["a", "a", "a", "a", "b"],
            "patient_id": ["1", "2", "3", "4", "9"],
            "step": ["input", "score", "score", "multivariate", "input"],
            "reason": [
                "no slide with status ok (S1: failed)",
                "missing model feature(s) f",
                "missing model feature(s) f",
                "missing age",
                "no row in the clinical table",
            ],
        }
    )
    assert left_out(excl, "a", ["4", "5", "6"]) == (
        3,
        "1 no slide with status ok; 2 missing model feature(s) f",
    )
    assert left_out(excl, "a", ["2", "3", "4"]) == (1, "no slide with status ok")
    assert left_out(excl, "b", [9]) == (0, "")
