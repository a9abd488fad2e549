"""Per-slide status records and the per-cohort slide status table.

A problem confined to one slide (`histoprog.errors.SlideError`: missing or corrupt file,
unknown mpp, no tissue) does not fail the job: the stage writes its outputs with
``status: failed`` and the reason, later stages pass the failure on, and the cohort's
``slide_status.tsv`` lists every slide with the first stage that failed and why.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from histoprog.io import read_json

if TYPE_CHECKING:  # every stage imports this module; only the tables need pandas
    import pandas as pd

OK = "ok"
FAILED = "failed"
STATUS_COLUMNS = ("slide_id", "status", "stage", "reason", "n_tiles")

log = logging.getLogger(__name__)


def failure_record(stage: str, reason: str) -> dict[str, Any]:
    """The status fields of a slide output that failed at ``stage``."""
    return {"status": FAILED, "failed_stage": stage, "reason": reason}


def upstream_failure(meta: Mapping[str, Any]) -> dict[str, Any] | None:
    """The failure record to pass on when an input output failed, else None."""
    if meta.get("status") == FAILED:
        return failure_record(str(meta.get("failed_stage")), str(meta.get("reason")))
    return None


def failure_figure(slide_id: str, stage: str, reason: str) -> Any:
    """A small figure that states why a slide has no QC image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2))
    ax.set_axis_off()
    ax.text(0.01, 0.95, f"slide {slide_id}: failed at '{stage}'", va="top", weight="bold")
    ax.text(0.01, 0.7, _wrap(reason, 90), va="top", fontsize=8)
    return fig


def cohort_status(slide_ids: Sequence[str], stage_outputs: Sequence[Sequence[str]]) -> pd.DataFrame:
    """One row per slide: ``ok`` or the first failed stage and its reason.

    Args:
        slide_ids: the cohort's slides, in sheet order.
        stage_outputs: per slide, its stage JSON files in pipeline order.
    """
    rows = []
    for slide_id, paths in zip(slide_ids, stage_outputs, strict=True):
        row = {"slide_id": slide_id, "status": OK, "stage": "", "reason": "", "n_tiles": 0}
        for path in paths:
            meta = read_json(path)
            if "n_tiles" in meta:
                row["n_tiles"] = int(meta["n_tiles"])
            if meta.get("status") == FAILED:
                row.update(
                    status=FAILED,
                    stage=meta.get("failed_stage", Path(path).stem),
                    reason=meta.get("reason", ""),
                )
                break
        rows.append(row)
    import pandas as pd

    table = pd.DataFrame(rows, columns=list(STATUS_COLUMNS))
    failed = table[table["status"] == FAILED]
    for slide_id, stage, reason in failed[["slide_id", "stage", "reason"]].itertuples(index=False):
        log.warning("slide %s failed at %s: %s", slide_id, stage, reason)
    return table


def _wrap(text: str, width: int) -> str:
    """Hard-wrap a message for a figure."""
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def failure_summary(tables: Mapping[str, str | Path], examples: int = 3) -> tuple[list[str], int]:
    """What the end of a run says about failed slides, per cohort.

    Args:
        tables: per cohort, its table with ``slide_id``, ``status`` and ``reason`` columns
            (``slide_status.tsv``, or an HCC cohort's ``mil.tsv``); tables not yet written
            (a run that stopped early or made other targets) are skipped.
        examples: how many failed slides to name per cohort.

    Returns:
        One line per cohort with failed slides (count, the first ``examples`` slides and
        reasons, the table's path), and the number of failed slides in all.
    """
    import pandas as pd

    lines: list[str] = []
    total = 0
    for cohort, path in tables.items():
        if not Path(path).is_file():
            continue
        table = pd.read_csv(path, sep="\t", dtype={"slide_id": str}, keep_default_na=False)
        failed = table[table["status"] == FAILED]
        if failed.empty:
            continue
        total += len(failed)
        shown = "; ".join(
            f"{slide}: {_short(reason)}"
            for slide, reason in failed[["slide_id", "reason"]]
            .head(examples)
            .itertuples(index=False)
        )
        more = f"; and {len(failed) - examples} more" if len(failed) > examples else ""
        lines.append(
            f"cohort '{cohort}': {len(failed)} of {len(table)} slides failed ({shown}{more}); "
            f"every slide's status is in {path}"
        )
    return lines, total


def _short(reason: str, limit: int = 160) -> str:
    """A failure reason without its fix, cut to ``limit`` characters (the table has it all)."""
    problem = reason.split(" Fix: ")[0]
    return problem if len(problem) <= limit else problem[: limit - 3] + "..."
