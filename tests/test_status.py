"""The end-of-run failure summary (histoprog.status.failure_summary)."""

from __future__ import annotations

from pathlib import Path

from histoprog.status import failure_summary


def write(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    lines = ["slide_id\tstatus\treason"] + ["\t".join(row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_summary_names_failed_slides_per_cohort(tmp_path):
    a = write(
        tmp_path / "a.tsv",
        [("S1", "ok", ""), ("S2", "failed", "no tissue"), ("S3", "failed", "corrupt"),
         ("S4", "failed", "dark"), ("S5", "failed", "mpp")],
    )  # fmt: skip
    b = write(tmp_path / "b.tsv", [("T1", "ok", "")])
    lines, failed = failure_summary({"a": a, "b": b, "c": tmp_path / "absent.tsv"}, examples=2)
    assert failed == 4
    assert len(lines) == 1
    assert lines[0].startswith("cohort 'a': 4 of 5 slides failed (S2: no tissue; S3: corrupt")
    assert "and 2 more" in lines[0] and str(a) in lines[0]
    assert "S4" not in lines[0]


def test_summary_shortens_reasons_to_the_problem(tmp_path):
    long = "slide 'S1': it is broken" + " badly" * 40 + ". Fix: re-copy it"
    table = write(tmp_path / "t.tsv", [("S1", "failed", long)])
    (line,), _ = failure_summary({"t": table})
    assert "Fix:" not in line and "re-copy" not in line
    assert "S1: slide 'S1': it is broken badly" in line and "..." in line


def test_summary_is_empty_when_nothing_failed(tmp_path):
    ok = write(tmp_path / "ok.tsv", [("S1", "ok", "")])
    assert failure_summary({"x": ok}) == ([], 0)
