"""The jobs the default target plans are those of the fixture (DAG speed-ups change none).

The fixture was written by ``python tests/planned_jobs.py`` before the DAG work of
benchmarks/bench_dag.py; regenerate it only for a change meant to alter what runs.
"""

from __future__ import annotations

import difflib

from conftest import ROOT
from planned_jobs import planned_jobs

FIXTURE = ROOT / "tests" / "fixtures" / "planned_jobs" / "demo.txt"


def test_default_target_plans_the_same_jobs():
    expected = FIXTURE.read_text()
    got = planned_jobs()
    if got != expected:
        diff = difflib.unified_diff(
            expected.splitlines(), got.splitlines(), "fixture", "now", n=1, lineterm=""
        )
        raise AssertionError("planned jobs changed:\n" + "\n".join(list(diff)[:60]))
    assert expected.count("\nrule tile:") >= 100  # the demo's slides, not an empty plan
