"""The Slurm profile on a real single-node Slurm cluster.

A session fixture brings the cluster up with ``scripts/slurm/cluster.sh up`` (installing
slurmctld, slurmd, slurm-client and munge from apt when missing) and takes it down at the
end; the test runs the workflow through ``profiles/slurm`` on a two-slide cohort and checks
that every job was a Slurm job that completed. Needs Linux, root and apt (or the Slurm
binaries); set ``HISTOPROG_SKIP_SLURM=1`` to skip it. 1-2 minutes on the 2-core CI machine.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, SHARED

CLUSTER = ROOT / "scripts" / "slurm" / "cluster.sh"
PROFILE = ROOT / "profiles" / "slurm"
LOCK = Path("/var/lock/histoprog-slurm-test.lock")
SLIDES = {
    "cmu_svs": "cmu-1-small-region_3level.svs",
    "cmu_tiff": "cmu-1-small-region_3level_generic.tiff",
}
PER_SLIDE_RULES = ("tile", "stain")
SLURM_BINARIES = ("slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "munged")
SUBMITTED = re.compile(
    r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+/rule_(\w+)/(\S*?)/?\d+\.log)\)"
)


def _skip_reason() -> str | None:
    if os.environ.get("HISTOPROG_SKIP_SLURM") == "1":
        return "HISTOPROG_SKIP_SLURM=1"
    if not sys.platform.startswith("linux"):
        return f"a local Slurm cluster needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "bringing up a local Slurm cluster needs root (installs packages, starts daemons)"
    if not shutil.which("apt-get") and not all(shutil.which(b) for b in SLURM_BINARIES):
        return "neither apt-get nor the Slurm/munge binaries (slurmctld, slurmd, ...) are here"
    missing = [n for n in SLIDES.values() if not (SHARED / "slides" / n).is_file()]
    if missing:
        return f"test slides {missing} not under {SHARED / 'slides'}"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed"
    return None


needs_slurm = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))
RULE = re.compile(r"^(?:rule|checkpoint) (\w+):\n(.*?)(?=^\S|\Z)", re.M | re.S)


def test_rules_set_memory_and_time_that_grow_with_attempt():
    """Every rule that submits a job sets mem_mb/runtime with per_attempt; the profile does not."""
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert profile["slurm-status-command"] == "squeue"  # sacct hangs without accounting
    assert profile["retries"] >= 1
    for rule, values in (profile.get("set-resources") or {}).items():
        assert not {"mem_mb", "runtime"} & set(values), f"{rule}: set in the rule, not here"
    checked = 0
    included = re.findall(r'^include: "(\S+\.smk)"', (ROOT / "Snakefile").read_text(), re.M)
    for smk in (ROOT / path for path in included):
        for name, body in RULE.findall(smk.read_text()):
            submits = any(k in body for k in ("shell:", "run:", "script:"))
            if not submits or re.search(r"^\s+localrule: True", body, re.M):
                continue  # nothing to submit
            for key in ("mem_mb", "runtime"):
                assert re.search(rf"^\s+{key}=per_attempt\(\d+\),", body, re.M), (
                    f"rule {name} ({smk.name}): set {key}=per_attempt(<value>) in resources:"
                )
            checked += 1
    assert checked >= 10


def _cluster(command: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(CLUSTER), command],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running single-node Slurm cluster: ours (taken down afterwards) or one already up."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "w") as lock:
        # one Slurm test at a time on this machine (other sessions may run the suite too)
        deadline = time.monotonic() + 600
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.skip(f"another Slurm test held {LOCK} for 10 minutes")
                time.sleep(2)
        already_up = _cluster("status", timeout=30).returncode == 0
        if not already_up:
            up = _cluster("up")
            if up.returncode != 0:
                _cluster("down")
                pytest.fail(f"cluster.sh up failed:\n{up.stdout}\n{up.stderr}")
        try:
            yield already_up
        finally:
            if not already_up:
                down = _cluster("down")
                assert down.returncode == 0, f"cluster.sh down failed:\n{down.stderr}"


def _tiny_cohort(work: Path) -> None:
    paths = {slide: SHARED / "slides" / name for slide, name in SLIDES.items()}
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["cohorts"] = "cohorts.tsv"
    config["crlm"]["clinical_factors"] = []  # the clinical table has only the outcome
    (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (work / "cohorts.tsv").write_text(
        "cohort\tpipeline\trole\tslides\tclinical\ntiny\tcrlm\tdiscovery\tslides.tsv\tclinical.tsv\n"
    )
    rows = [f"{slide}\tP{i}\t{path}" for i, (slide, path) in enumerate(paths.items())]
    (work / "slides.tsv").write_text("slide_id\tpatient_id\tpath\n" + "\n".join(rows) + "\n")
    (work / "clinical.tsv").write_text(
        "patient_id\tos_months\tos_event\nP0\t12.5\t1\nP1\t30.0\t0\n"
    )


def _scontrol_job(job_id: str) -> dict[str, str]:
    out = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=30
    ).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out))


def _jobcomp_records(run_id: str) -> dict[str, dict[str, str]] | None:
    """Slurm's job completion records (JobCompType=jobcomp/filetxt) of a run, by job id."""
    config = subprocess.run(
        ["scontrol", "show", "config"], capture_output=True, text=True, timeout=30
    ).stdout
    comp_type = re.search(r"^JobCompType\s*=\s*(\S+)", config, re.M)
    comp_loc = re.search(r"^JobCompLoc\s*=\s*(\S+)", config, re.M)
    if not comp_type or comp_type.group(1) != "jobcomp/filetxt" or not comp_loc:
        return None  # a cluster without the job completion file: scontrol only
    path = Path(comp_loc.group(1))
    records = {}
    for line in path.read_text().splitlines() if path.is_file() else []:
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if "JobId" in fields and fields.get("Name") == run_id:
            records[fields["JobId"]] = fields
    return records


@needs_slurm
@pytest.mark.slow
@pytest.mark.workflow
def test_workflow_runs_every_job_through_slurm(slurm_cluster, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    _tiny_cohort(work)
    env = dict(os.environ)
    # the jobs inherit this environment (sbatch --export=ALL): they find the venv's python
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for var in [v for v in env if v.startswith("SLURM_")]:
        del env[var]
    command = [
        sys.executable, "-m", "snakemake",
        "-s", str(ROOT / "Snakefile"),
        "--directory", str(work),
        "--configfile", str(work / "config.yaml"),
        "--workflow-profile", str(PROFILE),
        "--slurm-init-seconds-before-status-checks", "2",
        "--slurm-keep-successful-logs",
        # the documented way to name the partition (cluster.sh's is 'main')
        "--default-resources", "slurm_partition=main", "mem_mb=2000", "runtime=60",
        "--latency-wait", "10",
        "results/tiny/slide_status.tsv",
    ]  # fmt: skip
    started = time.monotonic()
    try:
        run = subprocess.run(
            command,
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=540,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"snakemake through Slurm took over 540 s:\n{err.stderr}")
    log = run.stdout + run.stderr
    assert run.returncode == 0, f"snakemake failed ({run.returncode}):\n{log[-6000:]}"
    elapsed = time.monotonic() - started

    run_id = re.search(r"SLURM run ID: (\S+)", log)
    assert run_id, f"no 'SLURM run ID' in snakemake's output (not the Slurm executor?):\n{log}"
    submitted = SUBMITTED.findall(log)
    by_rule: dict[str, list[tuple[str, str, str]]] = {}
    for job_id, logfile, rule, wildcards in submitted:
        by_rule.setdefault(rule, []).append((job_id, logfile, wildcards))

    # every per-slide job (and the cohort job) was submitted to Slurm, one job per slide
    for rule in PER_SLIDE_RULES:
        assert sorted(w for _, _, w in by_rule.get(rule, [])) == sorted(
            f"tiny_{slide}" for slide in SLIDES
        ), f"{rule}: expected one Slurm job per slide, got {by_rule.get(rule)}"
    assert len(by_rule.get("slide_status", [])) == 1
    assert "localrule" not in log, "some job ran locally instead of on Slurm"

    # ... and Slurm itself knows them as completed jobs of this run
    jobcomp = _jobcomp_records(run_id.group(1))
    for _ in range(20):  # the completion record is written just after the job ends
        if jobcomp is None or all(job_id in jobcomp for job_id, _, _, _ in submitted):
            break
        time.sleep(0.5)
        jobcomp = _jobcomp_records(run_id.group(1))
    for job_id, logfile, rule, _wildcards in submitted:
        info = _scontrol_job(job_id)
        if info:  # kept by slurmctld for MinJobAge seconds after the end
            assert info["JobState"] == "COMPLETED", f"Slurm job {job_id} ({rule}): {info}"
            assert info["Partition"] == "main", info
            assert info["JobName"] == run_id.group(1)
            assert info["Comment"].startswith(f"rule_{rule}"), info
            if rule == "tile":  # the rule's per_attempt(2000) MB and (30) min at attempt 1
                assert info["MinMemoryNode"] == "2000M", info
                assert info["TimeLimit"] == "00:30:00", info
        if jobcomp is not None:
            record = jobcomp.get(job_id)
            assert record, f"Slurm job {job_id} ({rule}) is not in the job completion file"
            assert record["JobState"] == "COMPLETED", record
        assert info or jobcomp is not None, f"Slurm has no record of job {job_id} ({rule})"
        slurm_log = Path(logfile)
        assert slurm_log.is_file(), f"no Slurm log {slurm_log}"
        assert f"rule {rule}:" in slurm_log.read_text()

    # the outputs are there and the slides were really processed
    for slide in SLIDES:
        slide_dir = work / "results" / "tiny" / "slides" / slide
        for name in ("tiles.tsv", "tiles.json", "tissue_mask.png", "stain.json", "stain_qc.png"):
            assert (slide_dir / name).is_file(), f"missing {slide_dir / name}"
    status = (work / "results" / "tiny" / "slide_status.tsv").read_text().splitlines()
    header = status[0].split("\t")
    rows = {r.split("\t")[0]: dict(zip(header, r.split("\t"), strict=False)) for r in status[1:]}
    assert set(rows) == set(SLIDES)
    assert all(row["status"] == "ok" for row in rows.values()), rows
    print(f"workflow through Slurm: {len(submitted)} jobs in {elapsed:.0f} s")


@needs_slurm
def test_cluster_script_is_idempotent(slurm_cluster):
    again = _cluster("up", timeout=60)
    assert again.returncode == 0, again.stderr
    status = _cluster("status", timeout=30)
    assert status.returncode == 0 and status.stdout.startswith("up:"), status.stdout
    assert " idle" in status.stdout or " mixed" in status.stdout, status.stdout
