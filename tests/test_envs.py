"""The per-rule conda envs pin exactly what the pip venv pins."""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


@pytest.mark.parametrize("env", sorted((ROOT / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_env_pins_match_requirements(env):
    pins = requirement_pins()
    spec = yaml.safe_load(env.read_text())
    pip_sections = [d["pip"] for d in spec["dependencies"] if isinstance(d, dict)]
    assert pip_sections, f"{env.name} has no pip section"
    for requirement in pip_sections[0]:
        name, sep, version = requirement.partition("==")
        assert sep, f"{env.name}: {requirement} is not pinned with =="
        assert pins.get(name.lower()) == version, f"{env.name}: {requirement} vs requirements.txt"


def test_every_rule_names_an_existing_env():
    for rules in (ROOT / "workflow" / "rules").glob("*.smk"):
        lines = [line.strip() for line in rules.read_text().splitlines()]
        n_rules = sum(line.startswith("rule ") for line in lines)
        envs = [lines[i + 1].strip('",') for i, line in enumerate(lines) if line == "conda:"]
        assert len(envs) == n_rules, f"{rules.name}: {n_rules} rules, {len(envs)} conda envs"
        for env in envs:
            assert (rules.parent / env).resolve().is_file(), f"{rules.name}: {env} missing"
