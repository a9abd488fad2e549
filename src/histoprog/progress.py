"""Line-based progress for long loops, written to the rule's log through `logging`.

tqdm redraws one line with carriage returns, which a log file keeps as one long noisy line;
``log_progress`` logs a plain line every ``interval`` seconds and one summary line at the end::

    tiles: 512/2048 (25%), 171.3 tiles/s, 9 s left
    tiles: 2048 in 11.9 s, 172.1 tiles/s
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger("histoprog.progress")


def log_progress(
    iterable: Iterable[T],
    description: str,
    total: int | None = None,
    size: Callable[[T], int] | None = None,
    interval: float = 10.0,
    logger: logging.Logger | None = None,
    unit: str | None = None,
) -> Iterator[T]:
    """Yield from ``iterable``, logging progress lines at most every ``interval`` seconds.

    Args:
        iterable: the items (e.g. a DataLoader's batches).
        description: what is counted, e.g. ``"tiles"`` (starts every line).
        total: number of counted units, for the share done and the time left.
        size: units in one item (e.g. tiles in a batch); 1 per item when None.
        interval: seconds between progress lines; the summary line is always written.
        logger: where to log (INFO); this module's logger when None.
        unit: name of the counted units in rates (``description`` when None).
    """
    out = logger or log
    unit = unit or description
    started = last = time.perf_counter()
    done = 0
    for item in iterable:
        yield item
        done += size(item) if size else 1
        now = time.perf_counter()
        if now - last >= interval:
            last = now
            out.info("%s", progress_line(description, done, total, now - started, unit))
    seconds = time.perf_counter() - started
    rate = done / seconds if seconds > 0 else float("nan")
    out.info("%s: %d in %.1f s, %.1f %s/s", description, done, seconds, rate, unit)


def batch_len(batch: Sequence[Sized]) -> int:
    """Items in a DataLoader batch: the length of its first tensor."""
    return len(batch[0])


def progress_line(
    description: str, done: int, total: int | None, seconds: float, unit: str | None = None
) -> str:
    """One progress line: count, share of ``total``, rate (``unit``/s) and time left."""
    unit = unit or description
    rate = done / seconds if seconds > 0 else float("nan")
    if not total:
        return f"{description}: {done}, {rate:.1f} {unit}/s"
    left = (total - done) / rate if rate > 0 else float("nan")
    return (
        f"{description}: {done}/{total} ({done / total:.0%}), {rate:.1f} {unit}/s, "
        f"{left:.0f} s left"
    )
