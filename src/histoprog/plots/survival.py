"""Survival-analysis figures (METHODS 4-5); the per-slide SOF figure is in sof_figure.

Every function returns a matplotlib ``Figure`` built without pyplot (no GUI backend, no
global figure registry); save it with :func:`histoprog.io.save_figure`.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import NullFormatter

if TYPE_CHECKING:  # pandas in annotations only
    import pandas as pd
    from matplotlib.axes import Axes

    from histoprog.survival import CalibrationResult, KMResult, TimeROCResult

__all__ = [
    "km_axes",
    "km_figure",
    "left_out",
    "km_panels",
    "forest_plot",
    "correlation_heatmap",
    "time_roc_figure",
    "calibration_figure",
]


def _p(p: float) -> str:
    """A p-value for a figure label."""
    if not np.isfinite(p):
        return "NA"
    return "< 0.0001" if p < 1e-4 else f"= {p:.3g}" if p < 0.001 else f"= {p:.3f}"


def _risk_times(curves: Mapping[str, KMResult], step: float) -> np.ndarray:
    """Times at which numbers at risk are shown: 0, step, ... up to the last follow-up."""
    last = max(float(km.table["time"].max()) for km in curves.values())
    return np.arange(0.0, last + 1e-9, step)


def _patients_line(curves: Mapping[str, KMResult], n_total: int | None, left_out: str) -> str:
    """``n = 39 of 40 (1 left out: <left_out>)``; ``n = 40`` when nobody is left out."""
    n = sum(int(km.table["n_risk"].iloc[0]) for km in curves.values() if len(km.table))
    if n_total is None or n_total <= n:
        return f"n = {n}"
    reason = f": {left_out}" if left_out else ""
    return f"n = {n} of {n_total} ({n_total - n} left out{reason})"


def _wrap(title: str, width: int = 80) -> str:
    """Each line of ``title`` wrapped at ``width`` characters."""
    return "\n".join(textwrap.fill(line, width) for line in title.split("\n"))


def left_out(exclusions: pd.DataFrame, cohort: str, plotted: Sequence[object]) -> tuple[int, str]:
    """Patients of ``cohort`` in an exclusions table who are not ``plotted``, and why.

    Returns:
        (their number; each reason, details in parentheses dropped, with its count when
        there are several), for ``n_total`` and ``left_out`` of :func:`km_figure`.
    """
    rows = exclusions[exclusions["cohort"] == cohort].drop_duplicates("patient_id")
    rows = rows[~rows["patient_id"].astype(str).isin({str(p) for p in plotted})]
    reasons = rows["reason"].astype(str).str.replace(r"\s*\(.*\)$", "", regex=True)
    counts = reasons.value_counts(sort=False)
    if len(counts) == 1:
        return len(rows), str(counts.index[0])
    return len(rows), "; ".join(f"{n} {reason}" for reason, n in counts.items())


def km_axes(
    ax: Axes,
    ax_risk: Axes | None,
    curves: Mapping[str, KMResult],
    tests: pd.DataFrame | None = None,
    title: str = "",
    risk_step: float = 24.0,
    time_label: str = "Time (months)",
    n_total: int | None = None,
    left_out: str = "",
) -> None:
    """Draw KM curves on ``ax`` and the numbers at risk on ``ax_risk`` (if given).

    Censored times are marked '+' on each curve; x ticks are the numbers-at-risk times.

    Args:
        ax: Axes of the curves.
        ax_risk: Axes below for the numbers-at-risk table, or None.
        curves: label -> KM curve (the legend uses each curve's own label).
        tests: rows of :func:`histoprog.analysis.groups.group_survival` ``tests``; the log-rank
            p (overall or two-group) and HR (two groups) are written on the plot.
        title: Axes title.
        risk_step: months between numbers-at-risk columns.
        time_label: x-axis label.
        n_total: patients of the cohort; when more than the curves hold, the title says
            ``n = <plotted> of <n_total> (<difference> left out: <left_out>)``.
        left_out: why patients of the cohort are not plotted (short).
    """
    for km in curves.values():
        km.plot(ax=ax)
        censored = km.table[km.table["n_censor"] > 0]
        ax.plot(
            censored["time"],
            censored["surv"],
            ls="none",
            marker="+",
            ms=7,
            mew=1.2,
            color=ax.get_lines()[-1].get_color(),
        )
    ax.set_xlabel(time_label)
    if curves and n_total is not None:
        title = "\n".join(filter(None, [title, _patients_line(curves, n_total, left_out)]))
    ax.set_title(_wrap(title), fontsize=9, loc="left")
    ax.grid(alpha=0.3)
    if tests is not None and len(tests):
        main = tests[tests["comparison"].isin(["overall", "two-group"])]
        lines = []
        for _, r in main.iterrows():
            text = f"log-rank p {_p(r['p'])}"
            if np.isfinite(r.get("hr", np.nan)):
                text += f"\nHR {r['hr']:.2f} ({r['hr_lower']:.2f}-{r['hr_upper']:.2f})"
            if r.get("note"):
                text = str(r["note"])
            lines.append(text)
        ax.text(
            0.98, 0.98, "\n".join(lines), transform=ax.transAxes, ha="right", va="top", fontsize=8
        )
    ax.legend(loc="lower left", fontsize=7)
    if not curves:
        return
    times = _risk_times(curves, risk_step)
    ax.set_xticks(times)
    if ax_risk is None:
        return
    ax_risk.set_xlim(ax.get_xlim())
    ax_risk.set_ylim(-0.5, len(curves) - 0.5)
    for i, (name, km) in enumerate(curves.items()):
        y = len(curves) - 1 - i
        for t, n in zip(times, km.at(times)["n_risk"], strict=True):
            ax_risk.text(t, y, str(int(n)), ha="center", va="center", fontsize=7)
        ax_risk.text(
            -0.01,
            y,
            name,
            transform=ax_risk.get_yaxis_transform(),
            ha="right",
            va="center",
            fontsize=7,
        )
    ax_risk.set_yticks([])
    ax_risk.set_xticks(times)
    ax_risk.tick_params(labelsize=7)
    ax_risk.set_title("numbers at risk", fontsize=7, loc="left")
    for side in ("top", "right", "left"):
        ax_risk.spines[side].set_visible(False)


def km_figure(
    curves: Mapping[str, KMResult],
    tests: pd.DataFrame | None = None,
    title: str = "",
    risk_step: float = 24.0,
    time_label: str = "Time (months)",
    n_total: int | None = None,
    left_out: str = "",
) -> Figure:
    """Kaplan-Meier curves with log-rank p, HR and a numbers-at-risk table below.

    ``time_label``, ``n_total`` and ``left_out`` as in :func:`km_axes`.
    """
    fig = Figure(figsize=(6, 5.2))
    ax, ax_risk = fig.subplots(2, 1, gridspec_kw={"height_ratios": [4, 1]}, sharex=False)
    km_axes(ax, ax_risk, curves, tests, title, risk_step, time_label, n_total, left_out)
    fig.tight_layout()
    return fig


def km_panels(
    panels: Sequence[tuple[str, Mapping[str, KMResult], pd.DataFrame]],
    title: str = "",
    ncols: int = 3,
    risk_step: float = 24.0,
    time_label: str = "Time (months)",
) -> Figure:
    """Several KM plots (title, curves, tests) in a grid, each with numbers at risk."""
    n = max(1, len(panels))
    nrows = -(-n // ncols)
    fig = Figure(figsize=(4.6 * ncols, 4.4 * nrows))
    grid = fig.add_gridspec(2 * nrows, ncols, height_ratios=[4, 1] * nrows)
    for i, (name, curves, tests) in enumerate(panels):
        r, c = divmod(i, ncols)
        ax = fig.add_subplot(grid[2 * r, c])
        ax_risk = fig.add_subplot(grid[2 * r + 1, c])
        if curves:
            km_axes(ax, ax_risk, curves, tests, name, risk_step, time_label)
        else:
            ax.set_title(name, fontsize=9, loc="left")
            ax.text(0.5, 0.5, "no events", ha="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            ax_risk.set_axis_off()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


#: hazard-ratio ticks of the forest plot (those within its range are shown)
HR_TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100)


def forest_plot(table: pd.DataFrame, title: str = "") -> Figure:
    """Hazard ratios with 95 % CI on a log axis (rows of a Cox summary: term, hr, ...)."""
    t = table.dropna(subset=["hr"]).reset_index(drop=True)
    fig = Figure(figsize=(6.5, 0.45 * len(t) + 1.4))
    ax = fig.subplots()
    y = np.arange(len(t))[::-1]
    ax.errorbar(
        t["hr"],
        y,
        xerr=[t["hr"] - t["hr_lower"], t["hr_upper"] - t["hr"]],
        fmt="s",
        color="black",
        ecolor="grey",
        capsize=3,
    )
    ax.axvline(1.0, color="grey", ls=":", lw=1)
    ax.set_xscale("log")
    lo, hi = ax.get_xlim()  # ticks at 0.5, 1, 2 ... within the range, written plainly
    ticks = [v for v in HR_TICKS if lo <= v <= hi]
    ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_yticks(y)
    ax.set_yticklabels(t["term"], fontsize=8)
    for yi, (_, r) in zip(y, t.iterrows(), strict=True):
        ax.annotate(
            f"{r['hr']:.2f} ({r['hr_lower']:.2f}-{r['hr_upper']:.2f}), p {_p(r['p_wald'])}",
            (1.02, yi),
            xycoords=("axes fraction", "data"),
            va="center",
            fontsize=7,
        )
    ax.set_xlabel("hazard ratio (95 % CI)")
    ax.set_title(title, fontsize=9, loc="left")
    fig.tight_layout()
    return fig


def correlation_heatmap(
    pairs: pd.DataFrame, features: Sequence[str], title: str = "", r_max: float | None = None
) -> Figure:
    """Pearson r heat map from a long table (feature_a, feature_b, r); |r| > r_max outlined."""
    features = list(features)
    idx = {f: i for i, f in enumerate(features)}
    mat = np.eye(len(features))
    for a, b, r in pairs[["feature_a", "feature_b", "r"]].itertuples(index=False):
        if a in idx and b in idx:
            mat[idx[a], idx[b]] = mat[idx[b], idx[a]] = r
    size = 2.5 + 0.28 * len(features)
    fig = Figure(figsize=(size + 1, size))
    ax = fig.subplots()
    im = ax.imshow(mat, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(features)))
    ax.set_yticks(range(len(features)))
    ax.set_xticklabels(features, rotation=90, fontsize=6)
    ax.set_yticklabels(features, fontsize=6)
    if r_max is not None:
        for i, j in zip(
            *np.nonzero((np.abs(mat) > r_max) & ~np.eye(len(features), dtype=bool)), strict=True
        ):
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", lw=0.8))
    fig.colorbar(im, ax=ax, shrink=0.7, label="Pearson r")
    ax.set_title(title, fontsize=9, loc="left")
    fig.tight_layout()
    return fig


def time_roc_figure(
    curves: Sequence[TimeROCResult], marks: Sequence[float] = (), title: str = ""
) -> Figure:
    """AUC(t) curves of several markers (``survival.plot_auc_curves``), ``marks`` dashed."""
    from histoprog.survival import plot_auc_curves

    fig = Figure(figsize=(6, 4.2))
    ax = fig.subplots()
    if curves:
        plot_auc_curves(curves, ax=ax, ms=3)
    for t in marks:
        ax.axvline(t, color="grey", ls="--", lw=0.8)
    ax.set_ylim(0, 1)  # an AUC below the default lower limit would leave the axes
    ax.set_xlabel("Time (months)")
    ax.set_title(title, fontsize=9, loc="left")
    fig.tight_layout()
    return fig


def calibration_figure(results: Mapping[float, CalibrationResult], title: str = "") -> Figure:
    """One calibration panel per time: observed KM vs predicted, bootstrap-corrected."""
    n = max(1, len(results))
    fig = Figure(figsize=(4.4 * n, 4.4))
    axes = np.atleast_1d(fig.subplots(1, n))
    for ax, (u, res) in zip(axes, results.items(), strict=False):
        res.plot(ax=ax)
        ax.set_xlabel(f"predicted survival at {u:g} months")
        ax.set_ylabel(f"observed survival at {u:g} months")
        ax.set_title(f"{u:g} months (B = {res.n_boot})", fontsize=9, loc="left")
    if not results:
        axes[0].text(0.5, 0.5, "no calibration time within follow-up", ha="center")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
