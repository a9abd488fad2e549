"""The Slurm profile on a real single-node Slurm cluster.

A session fixture brings the cluster up with ``scripts/slurm/cluster.sh up`` (installing
slurmctld, slurmd, slurm-client and munge from apt when missing) and takes it down at the
end; the test runs the workflow through ``profiles/slurm`` on a three-slide cohort, two slides
per Slurm job (the profile's job groups), checks that every job was a Slurm job that completed
and that the outputs equal a local run's. Needs Linux, root and apt (or the Slurm binaries);
set ``HISTOPROG_SKIP_SLURM=1`` to skip it. About 2 minutes on the 2-core CI machine. The dry
run of the demo through the profile (group ids and sizes) needs no cluster.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import ROOT, SHARED
from workflow_helpers import snakemake_env

CLUSTER = ROOT / "scripts" / "slurm" / "cluster.sh"
PROFILE = ROOT / "profiles" / "slurm"
LOCK = Path("/var/lock/histoprog-slurm-test.lock")
SLIDES = {
    "cmu_svs": "cmu-1-small-region_3level.svs",
    "cmu_tiff": "cmu-1-small-region_3level_generic.tiff",
    "cmu_flat": "cmu-1-small-region.svs",
}
PER_SLIDE_RULES = ("tile", "stain")
SLURM_BINARIES = ("slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "munged")
# "Job <id> has been submitted with SLURM jobid N (log: .../slurm_logs/<kind>_<name>/.../N.log)"
# with kind `rule` (name: the rule) or `group` (name: group and rules, e.g. slide_stain_tile)
SUBMITTED = re.compile(
    r"Job \S+ has been submitted with SLURM jobid (\d+) "
    r"\(log: (\S+/slurm_logs/(rule|group)_([a-z_]+)/\S*?\d+\.log)\)"
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


GROUP_BLOCK = re.compile(
    r"Group job (\w+) \(jobs in lexicogr\. order\):\n(.*?)(?=^\S|\Z)", re.M | re.S
)
GROUPED_JOB = re.compile(
    r"^    rule (\w+):\n.*?^        wildcards: cohort=(\w+), slide=([\w.-]+)", re.M | re.S
)
# The per-slide chains and what each profile group holds (profiles/slurm/config.yaml): a
# component is what one slide contributes to a group (Snakemake's connected jobs).
SLIDE_GROUP = {"crlm": ("classify", "stain", "tile"), "hcc": ("nuclei", "tile")}
AFTER_FIT_COMPONENTS = {"crlm": (("sof",), ("geojson",)), "hcc": (("geojson_hcc", "mil_score"),)}


def _profile_group_components() -> dict[str, int]:
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    return {k: int(v) for k, v in (e.split("=") for e in profile["group-components"])}


def test_slurm_profile_plans_one_job_per_group_of_slides():
    """Dry run of the demo through the profile: each slide's chain in one job, k slides a job."""
    dry = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--forceall", "--workflow-profile", str(PROFILE)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=snakemake_env(),
    )  # fmt: skip
    assert dry.returncode == 0, dry.stderr[-4000:]
    groups: dict[str, list[dict[tuple[str, str], list[str]]]] = {}
    for name, block in GROUP_BLOCK.findall(dry.stdout):
        members: dict[tuple[str, str], list[str]] = {}
        for rule, cohort, slide in GROUPED_JOB.findall(block):
            members.setdefault((cohort, slide), []).append(rule)
        assert members, f"group job {name} with no per-slide jobs:\n{block[:2000]}"
        groups.setdefault(name, []).append(members)
    assert set(groups) == {"slide", "slide_after_fit"}, set(groups)

    pipeline = {}
    for _, row in pd.read_csv(ROOT / "config" / "cohorts.tsv", sep="\t").iterrows():
        for slide in pd.read_csv(ROOT / "config" / row["slides"], sep="\t")["slide_id"]:
            pipeline[(row["cohort"], str(slide))] = row["pipeline"]
    per_job = _profile_group_components()

    # group `slide`: every slide's whole chain in exactly one group job, at most k slides each
    seen = [key for members in groups["slide"] for key in members]
    assert sorted(seen) == sorted(pipeline), "each slide's chain in exactly one group job"
    for members in groups["slide"]:
        assert len(members) <= per_job["slide"]
        for key, rules in members.items():
            assert tuple(sorted(rules)) == SLIDE_GROUP[pipeline[key]], (key, rules)
    assert len(groups["slide"]) == math.ceil(len(pipeline) / per_job["slide"])

    # group `slide_after_fit`: the stages after a cohort-level fit, k components a job
    components = 0
    after: dict[tuple[str, str], list[str]] = {}
    for members in groups["slide_after_fit"]:
        n = 0
        for key, rules in members.items():
            after.setdefault(key, []).extend(rules)
            parts = AFTER_FIT_COMPONENTS[pipeline[key]]
            n += sum(1 for part in parts if set(part) <= set(rules))
        assert n <= per_job["slide_after_fit"]
        components += n
    for key, kind in pipeline.items():
        expected = sorted(r for part in AFTER_FIT_COMPONENTS[kind] for r in part)
        assert sorted(after[key]) == expected, (key, after[key])
    assert components == sum(len(AFTER_FIT_COMPONENTS[kind]) for kind in pipeline.values())
    assert len(groups["slide_after_fit"]) == math.ceil(components / per_job["slide_after_fit"])


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
        "patient_id\tos_months\tos_event\nP0\t12.5\t1\nP1\t30.0\t0\nP2\t20.0\t1\n"
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


def _run_snakemake(work: Path, *args: str, env: dict[str, str]) -> str:
    command = [
        sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
        "--directory", str(work), "--configfile", str(work / "config.yaml"),
        *args, "--", "results/tiny/slide_status.tsv",
    ]  # fmt: skip
    try:
        run = subprocess.run(
            command, cwd=work, env=env, capture_output=True, text=True, timeout=540,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"snakemake took over 540 s:\n{err.stderr}")
    log = run.stdout + run.stderr
    assert run.returncode == 0, f"snakemake failed ({run.returncode}):\n{log[-6000:]}"
    return log


def _comparable(path: Path) -> object:
    """A stage output as compared between runs: JSON without timing and provenance."""
    if path.suffix != ".json":
        return path.read_bytes()
    record = json.loads(path.read_text())
    for key in ("seconds", "provenance", "slide_path"):
        record.pop(key, None)
    return record


@needs_slurm
@pytest.mark.slow
@pytest.mark.workflow
def test_workflow_runs_grouped_jobs_through_slurm(slurm_cluster, tmp_path):
    """3 slides, 2 per Slurm job: 2 group jobs + the cohort job; outputs equal a local run's."""
    work, local = tmp_path / "work", tmp_path / "local"
    for folder in (work, local):
        folder.mkdir()
        _tiny_cohort(folder)
    env = dict(os.environ)
    # the jobs inherit this environment (sbatch --export=ALL): they find the venv's python
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for var in [v for v in env if v.startswith("SLURM_")]:
        del env[var]
    per_job, cores = 2, 2
    started = time.monotonic()
    log = _run_snakemake(
        work,
        "--workflow-profile", str(PROFILE),
        "--slurm-init-seconds-before-status-checks", "2",
        "--slurm-keep-successful-logs",
        # the documented way to name the partition (cluster.sh's is 'main')
        "--default-resources", "slurm_partition=main", "mem_mb=2000", "runtime=60",
        "--latency-wait", "10",
        # the test node has 2 CPUs (the profile's group jobs ask for up to 8)
        "--cores", str(cores), "--group-components", f"slide={per_job}",
        env=env,
    )  # fmt: skip
    elapsed = time.monotonic() - started

    run_id = re.search(r"SLURM run ID: (\S+)", log)
    assert run_id, f"no 'SLURM run ID' in snakemake's output (not the Slurm executor?):\n{log}"
    submitted = SUBMITTED.findall(log)
    groups = [(job_id, logfile) for job_id, logfile, kind, _ in submitted if kind == "group"]
    rules = [(job_id, logfile, name) for job_id, logfile, kind, name in submitted if kind == "rule"]
    # ceil(slides / slides per job) group jobs (tile + stain of each slide), 1 cohort job
    assert len(groups) == math.ceil(len(SLIDES) / per_job), submitted
    assert [name for _, _, name in rules] == ["slide_status"], submitted
    assert "localrule" not in log, "some job ran locally instead of on Slurm"

    # ... Slurm knows them as completed jobs of this run, and each slide ran in one of them
    jobcomp = _jobcomp_records(run_id.group(1))
    for _ in range(20):  # the completion record is written just after the job ends
        if jobcomp is None or all(job_id in jobcomp for job_id, *_ in submitted):
            break
        time.sleep(0.5)
        jobcomp = _jobcomp_records(run_id.group(1))
    slides_run: list[str] = []
    for job_id, logfile, kind, name in submitted:
        slurm_log = Path(logfile)
        assert slurm_log.is_file(), f"no Slurm log {slurm_log}"
        text = slurm_log.read_text()
        slides = sorted(set(re.findall(r"wildcards: cohort=tiny, slide=(\w+)", text)))
        info = _scontrol_job(job_id)
        if info:  # kept by slurmctld for MinJobAge seconds after the end
            assert info["JobState"] == "COMPLETED", f"Slurm job {job_id} ({name}): {info}"
            assert info["Partition"] == "main", info
            assert info["JobName"] == run_id.group(1)
            if kind == "group":  # the slides' tile and stain, per_attempt(2000) MB, 30 min
                assert info["Comment"] == "rule_slide_stain_tile", info
                at_once = min(len(slides), cores)
                assert info["MinMemoryNode"] == f"{2000 * at_once}M", info
                assert info["NumCPUs"] == str(at_once), info
                assert info["TimeLimit"] == "01:00:00", info  # tile then stain
        if jobcomp is not None:
            record = jobcomp.get(job_id)
            assert record, f"Slurm job {job_id} ({name}) is not in the job completion file"
            assert record["JobState"] == "COMPLETED", record
        assert info or jobcomp is not None, f"Slurm has no record of job {job_id} ({name})"
        if kind == "group":
            assert 1 <= len(slides) <= per_job, (logfile, slides)
            ran = set(
                re.findall(r"rule (\w+):\n(?:.*\n)*?.*wildcards: cohort=tiny, slide=(\w+)", text)
            )
            assert ran == {(r, slide) for r in PER_SLIDE_RULES for slide in slides}, ran
            slides_run += slides
    assert sorted(slides_run) == sorted(SLIDES), "each slide in exactly one group job"

    # the outputs equal those of a local run (timing and provenance aside)
    _run_snakemake(local, "--cores", str(cores), env=env)
    for slide in SLIDES:
        ours, theirs = (w / "results" / "tiny" / "slides" / slide for w in (work, local))
        for name in ("tiles.tsv", "tiles.json", "tissue_mask.png", "stain.json", "stain_qc.png"):
            assert (ours / name).is_file(), f"missing {ours / name}"
            if name != "stain_qc.png":  # a figure: its text holds the timing
                assert _comparable(ours / name) == _comparable(theirs / name), (slide, name)
    status = pd.read_csv(work / "results" / "tiny" / "slide_status.tsv", sep="\t")
    assert sorted(status["slide_id"]) == sorted(SLIDES)
    assert (status["status"] == "ok").all(), status
    print(f"workflow through Slurm: {len(submitted)} Slurm jobs in {elapsed:.0f} s")


@needs_slurm
def test_cluster_script_is_idempotent(slurm_cluster):
    again = _cluster("up", timeout=60)
    assert again.returncode == 0, again.stderr
    status = _cluster("status", timeout=30)
    assert status.returncode == 0 and status.stdout.startswith("up:"), status.stdout
    assert " idle" in status.stdout or " mixed" in status.stdout, status.stdout
