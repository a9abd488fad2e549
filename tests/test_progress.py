"""Line-based progress logging (histoprog.progress)."""

from __future__ import annotations

import logging

import pytest

from histoprog.progress import batch_len, log_progress, progress_line


def test_progress_lines_and_summary(caplog: pytest.LogCaptureFixture) -> None:
    batches = [([0] * 4, "a"), ([0] * 4, "b"), ([0] * 2, "c")]
    with caplog.at_level(logging.INFO, logger="histoprog.progress"):
        seen = list(log_progress(batches, "tiles", total=10, size=batch_len, interval=0.0))
    assert seen == batches
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(",")[0] for line in lines[:3]] == [
        "tiles: 4/10 (40%)",
        "tiles: 8/10 (80%)",
        "tiles: 10/10 (100%)",
    ]
    assert lines[3].startswith("tiles: 10 in ") and lines[3].endswith(" tiles/s")
    assert not any("\r" in line for line in lines)


def test_only_the_summary_within_the_interval(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="histoprog.progress"):
        assert list(log_progress(range(5), "patches", interval=3600)) == list(range(5))
    assert len(caplog.records) == 1
    assert caplog.records[0].getMessage().startswith("patches: 5 in ")


@pytest.mark.parametrize(
    ("total", "expected"),
    [(None, "tiles: 50, 25.0 tiles/s"), (100, "tiles: 50/100 (50%), 25.0 tiles/s, 2 s left")],
)
def test_progress_line(total: int | None, expected: str) -> None:
    assert progress_line("tiles", 50, total, 2.0) == expected
