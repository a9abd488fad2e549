"""The per-slide stage runner: failure contract, timing, provenance and atomic outputs.

Every per-slide stage (tile, stain, classify, sof, nuclei, mil_score) writes, for one slide,
a JSON record and a few other files. :class:`SlideStage` does what they share; a stage gives
its work (a function returning the record's fields and the files' contents) and what a failed
slide gets instead (empty tables, an empty grid or bag):

* an input record with ``status: failed`` (an upstream stage failed) is passed on: the work
  does not run and the record copies the first such input's ``failed_stage`` and ``reason``;
* a :class:`~histoprog.errors.SlideError` or :class:`SlideFailure` raised by the work fails
  the slide at this stage instead of stopping the cohort; any other error propagates and the
  stage writes nothing;
* a failed slide still gets every output: the stage's empty ones, and a figure saying why;
* the record gets ``seconds`` (since the stage started) and ``provenance``;
* every output is written to a temporary file beside it first and renamed into place only
  once all have been written, the record last: an error leaves no new output, whole or
  partial, and a record never stands beside outputs it does not describe;
* one line ends the slide's log: the stage's summary (counts, seconds, throughput) when it
  worked, a warning with the reason when it failed.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from histoprog.errors import InputError, SlideError
from histoprog.io import atomic_path, read_json, save_figure, save_image, write_json
from histoprog.provenance import provenance
from histoprog.status import FAILED, OK, failure_figure, failure_record, upstream_failure

Writer = Callable[[Path, Any], None]
"""Writes one output's content to a path: ``writer(path, content)``."""


@dataclass
class StageResult:
    """One slide's record fields and the contents of its other outputs, by output path."""

    fields: dict[str, Any]
    files: dict[str, Any] = field(default_factory=dict)


class SlideFailure(Exception):
    """The slide fails at this stage with ``reason``; ``fields`` are kept in its record."""

    def __init__(self, reason: str, fields: Mapping[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fields = dict(fields or {})


class SlideStage:
    """One per-slide stage run for one slide; the clock starts when it is made.

    Args:
        name: the stage (``failed_stage`` of a slide that fails here).
        slide_id: the slide.
        logger: the stage's logger.
        record: path of the slide's JSON record.
        outputs: the stage's other outputs: path -> writer.
        failure_figure: the output (one of ``outputs``) that shows why a failed slide failed.
        summary: the log line of a slide that did not fail (after ``slide <id>: ``), a
            format string over the record's fields and ``rate``.
        count: the record field counted in ``rate`` (per second of the stage).
    """

    def __init__(
        self,
        name: str,
        slide_id: str,
        logger: logging.Logger,
        *,
        record: str | os.PathLike[str],
        outputs: Mapping[str, Writer],
        failure_figure: str | None = None,
        summary: str = "{status} in {seconds:.2f} s",
        count: str | None = None,
    ) -> None:
        self.name = name
        self.slide_id = slide_id
        self.log = logger
        self.record_path = record
        self.outputs = dict(outputs)
        self.failure_figure = failure_figure
        self.summary = summary
        self.count = count
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since the stage started."""
        return time.perf_counter() - self.started

    def run(
        self,
        record: dict[str, Any],
        params: dict[str, Any],
        work: Callable[[], StageResult],
        failed: StageResult,
        *,
        upstream: Iterable[Mapping[str, Any]] = (),
    ) -> dict[str, Any]:
        """Run ``work`` unless an upstream record failed; write every output; the record.

        Args:
            record: the record's first fields (slide id, settings); completed here.
            params: the parameters stored in its ``provenance``.
            work: the stage's work; raises SlideError or SlideFailure for a slide problem.
            failed: the fields and outputs of a failed slide (but the failure figure).
            upstream: the input records whose failure is passed on.
        """
        failure = next(filter(None, map(upstream_failure, upstream)), None)
        if failure is None:
            try:
                result = work()
            except SlideError as err:
                self.log.error("%s", err)
                failure = failure_record(self.name, str(err))
            except SlideFailure as err:
                self.log.error("slide %s: %s", self.slide_id, err.reason)
                record.update(err.fields)
                failure = failure_record(self.name, err.reason)
        if failure is None:
            record.update({"status": OK, **result.fields})
            files = result.files
        else:
            record.update(failure, **failed.fields)
            files = dict(failed.files)
            if self.failure_figure is not None:
                files[self.failure_figure] = failure_figure(
                    self.slide_id, failure["failed_stage"], failure["reason"]
                )
        record["seconds"] = round(self.elapsed(), 3)
        record["provenance"] = provenance(params)
        self._write(files, record)
        if failure is not None:
            self.log.warning("slide %s: %s at '%s': %s", self.slide_id, FAILED,
                             failure["failed_stage"], failure["reason"])  # fmt: skip
        else:
            per_second = rate(record[self.count], record["seconds"]) if self.count else None
            self.log.info("slide %s: %s", self.slide_id,
                          self.summary.format(**record, rate=per_second))  # fmt: skip
        return record

    def _write(self, files: Mapping[str, Any], record: dict[str, Any]) -> None:
        """Write every declared output, then the record, all or none."""
        if set(files) != set(self.outputs):
            raise ValueError(
                f"stage '{self.name}' gave outputs {sorted(files)}, "
                f"but declares {sorted(self.outputs)}"
            )
        items = [(path, self.outputs[path], files[path]) for path in self.outputs]
        write_all([*items, (self.record_path, write_json, record)])


def write_all(items: Sequence[tuple[str | os.PathLike[str], Writer, Any]]) -> None:
    """Write ``(path, writer, content)`` items to temporary files, then rename them in order.

    On an error no target is touched and every temporary file is removed.
    """
    with ExitStack() as stack:
        # contexts close last-in first-out: enter in reverse so the renames go in order
        staged = [stack.enter_context(atomic_path(path)) for path, _, _ in reversed(items)]
        for (_, write, content), tmp in zip(items, reversed(staged), strict=True):
            write(tmp, content)


def save_picture(path: str | os.PathLike[str], image: Any, dpi: int = 100) -> None:
    """Save a PIL image, or a matplotlib figure at ``dpi`` (format from the suffix)."""
    if hasattr(image, "savefig"):
        save_figure(path, image, dpi=dpi)
    else:
        save_image(path, image)


def rate(count: float, seconds: float) -> float:
    """``count / seconds`` for a log line; 0 when no time was measured."""
    return count / seconds if seconds > 0 else 0.0


def tiles_per_second(count: int, seconds: float) -> float | None:
    """The record's ``tiles_per_second`` (2 decimals); None when no time was measured."""
    return round(count / seconds, 2) if seconds > 0 else None


def read_upstream(path: str | os.PathLike[str], stage: str) -> dict[str, Any]:
    """An upstream stage's per-slide record, or a message that names the stage to run."""
    if not Path(path).is_file():
        raise InputError(
            f"{stage} output '{path}'",
            "does not exist",
            f"run `histoprog {stage}` for this slide first (the workflow's '{stage}' rule)",
        )
    return read_json(path)
