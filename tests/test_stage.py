"""The per-slide stage runner: failure contract, record fields, all-or-nothing outputs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from histoprog.errors import InputError, SlideError
from histoprog.io import write_tsv
from histoprog.stage import (
    SlideFailure,
    SlideStage,
    StageResult,
    read_upstream,
    save_picture,
    write_all,
)

log = logging.getLogger("histoprog.test_stage")
PNG = b"\x89PNG\r\n\x1a\n"


def paths(tmp_path: Path) -> dict[str, Path]:
    return {k: tmp_path / f for k, f in (("record", "demo.json"), ("table", "table.tsv"),
                                         ("figure", "figure.png"))}  # fmt: skip


def demo_stage(tmp_path: Path) -> SlideStage:
    p = paths(tmp_path)
    return SlideStage(
        "demo",
        "S1",
        log,
        record=p["record"],
        outputs={str(p["table"]): write_tsv, str(p["figure"]): save_picture},
        failure_figure=str(p["figure"]),
        summary="demo {status}, {n} rows in {seconds:.2f} s ({rate:.0f} rows/s)",
        count="n",
    )


def ok_work(tmp_path: Path):
    p = paths(tmp_path)
    table = pd.DataFrame({"a": [1, 2, 3], "b": [0.5, 0.25, 0.125]})
    image = Image.new("RGB", (8, 4), "red")
    return lambda: StageResult({"n": 3}, {str(p["table"]): table, str(p["figure"]): image})


def failed_outputs(tmp_path: Path) -> StageResult:
    return StageResult({"n": 0}, {str(paths(tmp_path)["table"]): pd.DataFrame(columns=["a", "b"])})


def never_run() -> StageResult:
    raise AssertionError("the work must not run")


def test_ok_slide_gets_fields_timing_provenance_and_summary(tmp_path, caplog):
    p = paths(tmp_path)
    with caplog.at_level(logging.INFO, logger=log.name):
        demo_stage(tmp_path).run(
            {"slide_id": "S1"}, {"alpha": 1.0}, ok_work(tmp_path), failed_outputs(tmp_path),
            upstream=[{"status": "ok"}],
        )  # fmt: skip
    record = json.loads(p["record"].read_text())
    assert (record["slide_id"], record["status"], record["n"]) == ("S1", "ok", 3)
    assert record["seconds"] >= 0
    assert record["provenance"]["params"] == {"alpha": 1.0}
    assert "numpy" in record["provenance"]["versions"]
    assert pd.read_csv(p["table"], sep="\t")["b"].tolist() == [0.5, 0.25, 0.125]
    assert p["figure"].read_bytes().startswith(PNG)
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("slide S1: demo ok, 3 rows in ") and line.endswith(" rows/s)")


def test_upstream_failure_is_passed_on_without_running_the_work(tmp_path, caplog):
    p = paths(tmp_path)
    upstream = [
        {"status": "ok"},
        {"status": "failed", "failed_stage": "tile", "reason": "no tissue"},
        {"status": "failed", "failed_stage": "stain", "reason": "later"},
    ]
    with caplog.at_level(logging.INFO, logger=log.name):
        demo_stage(tmp_path).run(
            {"slide_id": "S1"}, {}, never_run, failed_outputs(tmp_path), upstream=upstream
        )
    record = json.loads(p["record"].read_text())
    assert (record["status"], record["failed_stage"], record["reason"]) == (
        "failed", "tile", "no tissue"
    )  # fmt: skip
    assert record["n"] == 0 and "seconds" in record and "provenance" in record
    assert list(pd.read_csv(p["table"], sep="\t").columns) == ["a", "b"]
    assert p["figure"].read_bytes().startswith(PNG)  # the failure figure
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.getMessage() == "slide S1: failed at 'tile': no tissue"


def test_slide_error_fails_the_slide_at_this_stage(tmp_path):
    err = SlideError("slide 'S1'", "it cannot be read", "re-copy it")

    def work() -> StageResult:
        raise err

    demo_stage(tmp_path).run({"slide_id": "S1"}, {}, work, failed_outputs(tmp_path))
    record = json.loads(paths(tmp_path)["record"].read_text())
    assert (record["status"], record["failed_stage"]) == ("failed", "demo")
    assert record["reason"] == str(err) == "slide 'S1': it cannot be read. Fix: re-copy it"


def test_slide_failure_keeps_its_fields_and_reason(tmp_path):
    def work() -> StageResult:
        raise SlideFailure("5 of 9 tiles unreadable", {"n_bad": 5})

    demo_stage(tmp_path).run({"slide_id": "S1"}, {}, work, failed_outputs(tmp_path))
    record = json.loads(paths(tmp_path)["record"].read_text())
    assert record["reason"] == "5 of 9 tiles unreadable" and record["n_bad"] == 5
    assert record["failed_stage"] == "demo" and record["n"] == 0


def test_other_errors_propagate_and_leave_earlier_outputs_alone(tmp_path):
    p = paths(tmp_path)
    for path in p.values():
        path.write_text("old")

    def work() -> StageResult:
        raise InputError("model 'm.pt'", "does not exist", "train it")

    with pytest.raises(InputError, match="does not exist"):
        demo_stage(tmp_path).run({"slide_id": "S1"}, {}, work, failed_outputs(tmp_path))
    assert all(path.read_text() == "old" for path in p.values())
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted(f.name for f in p.values())


@pytest.mark.parametrize("broken", ["figure", "record"])
def test_a_failing_write_leaves_no_output(tmp_path, broken):
    """All or nothing: a failure in any output's write (the record's too) writes none."""
    p = paths(tmp_path)
    work = ok_work(tmp_path)

    def half_written(path: Path, image: Image.Image) -> None:
        path.write_bytes(PNG)  # a partial file, then the disk fills up
        raise OSError("No space left on device")

    stage = demo_stage(tmp_path)
    if broken == "figure":
        stage.outputs[str(p["figure"])] = half_written
    else:  # a field JSON cannot hold makes the record's write fail, after the others
        work = lambda: StageResult({"n": 3, "bad": object()}, ok_work(tmp_path)().files)  # noqa: E731
    with pytest.raises((OSError, TypeError)):
        stage.run({"slide_id": "S1"}, {}, work, failed_outputs(tmp_path))
    assert list(tmp_path.iterdir()) == []  # no target, no temporary file


def test_outputs_must_be_the_declared_ones(tmp_path):
    p = paths(tmp_path)
    table_only = StageResult({"n": 1}, {str(p["table"]): pd.DataFrame({"a": [1]})})
    with pytest.raises(ValueError, match="declares"):
        demo_stage(tmp_path).run({"slide_id": "S1"}, {}, lambda: table_only, table_only)
    assert list(tmp_path.iterdir()) == []


def test_write_all_renames_only_when_all_are_written(tmp_path):
    targets = [tmp_path / "a.npy", tmp_path / "b.npy"]
    seen: list[tuple[str, bool]] = []

    def npy(path: Path, value: np.ndarray) -> None:
        seen.append((path.suffix, any(t.exists() for t in targets)))
        np.save(path, value)  # np.save would add .npy to a path without that suffix

    write_all([(targets[0], npy, np.arange(3)), (targets[1], npy, np.ones(2))])
    assert seen == [(".npy", False), (".npy", False)]
    assert np.load(targets[0]).tolist() == [0, 1, 2] and np.load(targets[1]).tolist() == [1, 1]
    assert sorted(tmp_path.iterdir()) == targets


def test_missing_upstream_record_names_the_stage(tmp_path):
    with pytest.raises(InputError, match=r"run `histoprog tile` for this slide first"):
        read_upstream(tmp_path / "tiles.json", "tile")
