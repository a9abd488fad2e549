"""The jobs a dry run plans, as canonical text (tests/test_planned_jobs.py).

``python tests/planned_jobs.py > tests/fixtures/planned_jobs/demo.txt`` writes the fixture:
every job of the default target on the demo config (``snakemake -n --forceall -p``), one
block per job with its rule, wildcards, inputs, outputs, log, threads, resources and shell
command, sorted; the dry run's job ids, reasons and timestamps are left out. Regenerate it
when a change to the rules is meant to change what runs, and say so in the commit.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEEP = ("input:", "output:", "log:", "benchmark:", "wildcards:", "threads:", "resources:")


def planned_jobs(*extra: str) -> str:
    """The canonical job list of a dry run of the project in ROOT (demo config)."""
    dry = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--forceall", "-p", *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if dry.returncode != 0:
        raise RuntimeError(f"dry run failed:\n{dry.stderr[-4000:]}")
    jobs = dry.stdout.rsplit("\nJob stats:", 1)[0]  # the summary after the last job
    blocks = []
    for block in re.split(r"\n(?=\[[^\]]+\]\n)", jobs):
        lines = block.splitlines()[1:]  # drop the timestamp
        if not lines or not re.match(r"^(local)?rule \w+:$", lines[0]):
            continue
        kept = [lines[0].removeprefix("local")]
        for line in lines[1:]:
            text = line.strip()
            if text.startswith("resources:"):  # snakemake's order varies between runs
                items = re.sub(r"tmpdir=[^,]*", "tmpdir=<tmp>", text[10:]).split(",")
                kept.append("    resources: " + ", ".join(sorted(i.strip() for i in items)))
            elif text.startswith(KEEP):
                kept.append("    " + text)
            elif text and not re.match(r"^(jobid|reason|priority):", text) and line == text:
                kept.append("    " + text)  # -p prints "Shell command: ..." unindented
        blocks.append("\n".join(kept))
    return "\n".join(sorted(blocks)).replace(str(ROOT), "<root>") + "\n"


if __name__ == "__main__":
    sys.stdout.write(planned_jobs())
