"""One source for every default: the config schema (config/README.md, "Defaults").

config/config.yaml and config/README.md's table write the schema's defaults out (checked
equal); the commands' options and the settings dataclasses take theirs from
:func:`histoprog.defaults.default`, and no other place in the package writes a default.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from snakemake.utils import validate

from histoprog.analysis.crlm_settings import CRLMSettings
from histoprog.analysis.crs import CRSColumns
from histoprog.bundle import Bundle
from histoprog.cli import build_parser
from histoprog.defaults import CONFIG_SCHEMA, RENAMED, check_renamed, default, default_config
from histoprog.errors import InputError
from histoprog.hcc.analysis import HCCSettings
from histoprog.hcc.mil import MilConfig
from histoprog.hcc.unet import UnetConfig
from histoprog.scanner_jitter import ScannerJitter
from histoprog.sof import RegionParams
from histoprog.tiling import BlankParams
from histoprog.train.tissue import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "histoprog"

# (module, option) whose literal default is not a config value, and why
NON_CONFIG_OPTIONS = {
    ("commands/gmm_thresholds.py", "--grid-name"): "file name of classify's output",
    ("commands/gmm_thresholds.py", "--meta-name"): "file name of classify's output",
    ("commands/sof_table.py", "--name"): "file name of the sof stage's record",
    ("commands/status.py", "--stages"): "the per-slide stages of CRLM cohorts",
}
# modules whose options are not config keys: the test-data generator (synth nuclei takes
# hcc.synth_nuclei's defaults, the other generators have their own parameters)
NON_CONFIG_MODULES = {"commands/synth.py"}
# known gaps: mil_score's batch size has no config key (its rule passes hcc.nuclei.batch);
# the file belongs to the MIL map change in progress
KNOWN_GAPS = {("commands/mil_score.py", "batch_size")}
# settings-dataclass fields that are not config keys, and why
NON_CONFIG_FIELDS = {
    ("TrainConfig", "num_workers"): "library callers load in the main process; CLI: tissue.workers",
    ("ScannerJitter", "jpeg_quality"): "JPEG quality range of the jitter, not configurable",
}


def leaves(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted key -> value of every leaf (mappings without a schema of their own stay whole)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key not in ("crs", "synth_patches", "clinical_factors"):
            out.update(leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_config_yaml_documents_exactly_the_schema_defaults():
    documented = leaves(yaml.safe_load((ROOT / "config/config.yaml").read_text()))
    schema = leaves(default_config())
    assert sorted(documented) == sorted(schema)
    for key, value in schema.items():
        assert documented[key] == value and type(documented[key]) is type(value), key


def test_defaults_are_what_snakemake_validation_fills_in():
    config: dict[str, Any] = {}
    validate(config, str(CONFIG_SCHEMA), set_default=True)
    assert config == default_config()


def test_default_walks_dotted_keys():
    assert default("stain.alpha") == 1.0
    assert default("tile.hcc.px") == 512
    assert default("crlm.roc_times") == (60, 96)
    assert default("crlm.crs.cea") == "cea"
    with pytest.raises(KeyError, match="no default"):
        default("stain.nope")


def is_literal(node: ast.expr) -> bool:
    """A default written as a value (not None, a bool, "{}" or an empty container)."""
    named = ast.Name | ast.Call | ast.Attribute | ast.Subscript
    if any(isinstance(n, named) for n in ast.walk(node)):
        return False
    try:
        value = ast.literal_eval(node)
    except ValueError:
        return True  # arithmetic on constants
    return not (value is None or isinstance(value, bool) or value in ("{}", [], ()))


def is_number(node: ast.expr) -> bool:
    """A number written as a value."""
    return is_literal(node) and not isinstance(getattr(node, "value", None), str)


def modules() -> list[tuple[str, ast.Module]]:
    return [
        (path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text()))
        for path in sorted(PACKAGE.rglob("*.py"))
    ]


def test_no_command_option_holds_a_literal_default():
    found = []
    for name, tree in modules():
        if name in NON_CONFIG_MODULES:
            continue
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
            func = getattr(call.func, "attr", getattr(call.func, "id", ""))
            if func == "add_argument":
                flag = next((a.value for a in call.args if isinstance(a, ast.Constant)), "?")
                for kw in call.keywords:
                    if kw.arg == "default" and is_literal(kw.value):
                        if (name, flag) not in NON_CONFIG_OPTIONS:
                            found.append(f"{name}:{call.lineno} {flag}")
            elif func in ("add_torch_options", "add_seed"):  # values, not config keys
                for kw in call.keywords:
                    if is_number(kw.value) and (name, kw.arg) not in KNOWN_GAPS:
                        found.append(f"{name}:{call.lineno} {func}({kw.arg}=...)")
    assert not found, f"literal defaults (take them from histoprog.defaults.default): {found}"


def settings_classes() -> dict[str, list[ast.AnnAssign]]:
    """Dataclasses whose docstring names their config section: their annotated fields."""
    out = {}
    for _, tree in modules():
        for node in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            doc = ast.get_docstring(node) or ""
            decorated = any("dataclass" in ast.unparse(d) for d in node.decorator_list)
            if decorated and re.search(r"[Cc]onfig ``", doc):
                out[node.name] = [s for s in node.body if isinstance(s, ast.AnnAssign)]
    return out


def test_no_settings_dataclass_holds_a_literal_default():
    classes = settings_classes()
    expected = {c.__name__ for c in SETTINGS}
    assert expected <= set(classes), expected - set(classes)
    found = [
        f"{cls}.{f.target.id}"
        for cls, fields in classes.items()
        for f in fields
        if f.value is not None
        and isinstance(f.target, ast.Name)
        and is_literal(f.value)
        and (cls, f.target.id) not in NON_CONFIG_FIELDS
    ]
    assert not found, f"literal defaults (take them from histoprog.defaults.default): {found}"


def same(value: Any, expected: Any) -> bool:
    as_tuple = tuple(expected) if isinstance(expected, list) else expected
    return value == as_tuple


# settings dataclass -> (config section, field -> other config key, fields that are no key)
SETTINGS = {
    CRLMSettings: ("crlm", {"time": "clinical.crlm.time", "event": "clinical.crlm.event"},
                   {"crs"}),
    CRSColumns: ("crlm.crs", {}, set()),
    HCCSettings: ("hcc.analysis", {"time": "clinical.hcc.time", "event": "clinical.hcc.event",
                                   "threshold": "hcc.mil.threshold"}, set()),
    MilConfig: ("hcc.mil", {}, {"augment"}),
    UnetConfig: ("hcc.unet", {"batch_size": "hcc.unet.batch"}, {"target_mpp"}),
    RegionParams: ("crlm.region", {}, set()),
    BlankParams: ("tile.blank", {}, set()),
    TrainConfig: ("tissue", {}, {"num_workers"}),
    ScannerJitter: ("tissue.jitter", {}, {"jpeg_quality"}),
}  # fmt: skip


@pytest.mark.parametrize("cls", list(SETTINGS), ids=lambda c: c.__name__)
def test_settings_dataclass_defaults_are_the_schemas(cls):
    section, keys, skip = SETTINGS[cls]
    config = default_config()
    instance = cls()
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        key = keys.get(field.name, f"{section}.{field.name}")
        expected = leaves(config).get(key, default(key))
        assert same(getattr(instance, field.name), expected), (cls.__name__, field.name, key)
    assert CRLMSettings().crs == CRSColumns()


# command -> option dest -> config key (as the workflow's rules pass them)
CLI_KEYS = {
    "tile": {"target_mpp": "tile.crlm.mpp", "tile_px": "tile.crlm.px",
             "mpp_tolerance": "tile.mpp_tolerance", "lowres_mpp": "tile.lowres_mpp",
             **{k: f"tile.blank.{k}" for k in ("saturation_max", "value_min",
                                                "black_value_max", "max_blank_fraction")}},
    "stain": {k: f"stain.{k}" for k in ("fit", "fit_tiles", "target_image", "alpha", "beta",
                                         "io", "qc_tiles", "seed")},
    "train_tissue": {"stain": "tissue.patch_stain", "alpha": "stain.alpha",
                     "jitter_stain_sigma": "tissue.jitter.stain_sigma",
                     "jitter_jpeg_probability": "tissue.jitter.jpeg_probability",
                     **{k: f"tissue.{k}" for k in ("backbone", "weights", "tile_px", "epochs",
                                                   "patience", "batch_size", "lr", "lr_schedule",
                                                   "momentum", "val_fraction", "seed",
                                                   "workers", "device")}},
    "evaluate_tissue": {k: f"tissue.classify.{k}" for k in ("batch_size", "workers", "device")},
    "classify": {k: f"tissue.classify.{k}" for k in ("batch_size", "workers", "device",
                                                      "max_failed_fraction", "thumbnail_px")},
    "gmm_thresholds": {"seed": "crlm.seed", "dilation": "crlm.region.dilation"},
    "sof": {k: f"crlm.region.{k}" for k in ("dilation", "erosion", "min_component_tiles",
                                             "min_tumour_tiles")},
    "crlm_analysis": {"time": "clinical.crlm.time", "event": "clinical.crlm.event"},
    "train_unet": {"batch_size": "hcc.unet.batch", "device": "hcc.device",
                   **{k: f"hcc.unet.{k}" for k in ("encoder", "weights", "epochs", "crop",
                                                   "crops_per_image", "lr", "val_fraction",
                                                   "image_mpp", "seed", "workers")}},
    "nuclei": {"tile_px": "hcc.mil.tile_px_in", "batch_size": "hcc.nuclei.batch",
               "device": "hcc.device",
               **{k: f"hcc.nuclei.{k}" for k in ("bag_size", "fit_tiles", "seed", "workers",
                                                 "qc_tiles")}},
    "train_mil": {"time": "clinical.hcc.time", "event": "clinical.hcc.event",
                  "device": "hcc.device",
                  **{k: f"hcc.mil.{k}" for k in ("good_months", "poor_months", "epochs", "lr",
                                                 "lr_step", "l2", "threshold", "power",
                                                 "bag_size", "val_fraction", "weights",
                                                 "seed")}},
    "hcc_analysis": {"time": "clinical.hcc.time", "event": "clinical.hcc.event",
                     "threshold": "hcc.mil.threshold"},
}  # fmt: skip


def subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser(command)
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[command]


@pytest.mark.parametrize("command", list(CLI_KEYS))
def test_command_defaults_are_the_schemas(command):
    actions = {a.dest: a for a in subparser(command)._actions}
    for dest, key in CLI_KEYS[command].items():
        action = actions[dest]
        value = action.default  # argparse parses a text default with the option's type
        parsed = action.type(value) if isinstance(value, str) and action.type else value
        assert parsed == default(key), (command, dest, key)


def test_train_tissue_jitter_filters_default_is_the_schemas():
    assert subparser("train_tissue").get_default("jitter_filters") == ",".join(
        default("tissue.jitter.filters")
    )


@pytest.mark.parametrize(("old", "new"), list(RENAMED.items()))
def test_an_old_config_key_stops_naming_the_new_one(old, new):
    section, last = old.rsplit(".", 1)
    config: dict[str, Any] = {}
    node = config
    for part in section.split("."):
        node = node.setdefault(part, {})
    node[last] = 1
    with pytest.raises(InputError, match=f"config key {re.escape(old)}: was renamed {new}"):
        check_renamed(config)


def test_crlm_settings_with_an_old_key_name_the_new_one():
    with pytest.raises(InputError, match="calibration_B: was renamed.*calibration_bootstrap_reps"):
        CRLMSettings.from_mapping({"calibration_B": 200})


def test_a_bundle_exported_before_the_rename_locks_the_new_keys(tmp_path):
    bundle = Bundle(tmp_path, "hcc", {"locked": {"hcc.mil.t": 0.4457, "hcc.mil.p": 3}})
    assert bundle.locked == {"hcc.mil.threshold": 0.4457, "hcc.mil.power": 3}


def test_mil_checkpoint_keeps_the_papers_symbols():
    stored = MilConfig().to_dict()
    assert (stored["t"], stored["p"]) == (default("hcc.mil.threshold"), default("hcc.mil.power"))
    assert "threshold" not in stored and list(stored)[4:6] == ["t", "p"]


# config/README.md rows whose default cell describes the value instead of writing it
DESCRIBED = {"tissue.crc_classes", "tissue.patches.crc", "tissue.patches.crlm",
             "crlm.preop_chemo", "crlm.adjuvant_chemo", "hcc.analysis.auc_years",
             "synth_patches"}  # fmt: skip


def split_values(cell: str) -> list[str]:
    """A default cell's comma-separated values (commas inside brackets do not split)."""
    parts, depth, current = [], 0, ""
    for char in cell:
        depth += (char == "[") - (char == "]")
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    return [*parts, current.strip()]


def readme_defaults() -> list[tuple[str, str]]:
    """(key, default cell text) of each row of config/README.md's key table."""
    text = (ROOT / "config/README.md").read_text()
    table = text.split("## Keys", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        keys = re.findall(r"`([^`]+)`", cells[0])
        parent = keys[0].rsplit(".", 1)[0]
        keys = [parent + k if k.startswith(".") else k for k in keys]
        values = split_values(cells[1]) if len(keys) > 1 else [cells[1]]
        if any(k.endswith("*") for k in keys) or len(values) != len(keys):
            continue
        rows += [(k, v) for k, v in zip(keys, values, strict=True) if k not in DESCRIBED]
    return rows


def test_config_readme_gives_the_schema_defaults():
    rows = readme_defaults()
    assert len(rows) > 80
    wrong = [
        (key, cell, default(key))
        for key, cell in rows
        if not same(default(key), yaml.safe_load(cell.replace("`", "")))
    ]
    assert not wrong, wrong


def test_every_planned_command_line_parses():
    """The rules' flags are the commands' options (the demo's planned shell commands)."""
    parser = build_parser()
    fixture = ROOT / "tests/fixtures/planned_jobs/demo.txt"
    prefix = "    Shell command: python -m histoprog "
    lines = [
        line[len(prefix) :] for line in fixture.read_text().splitlines() if line.startswith(prefix)
    ]
    assert len(lines) > 100
    for line in lines:
        args = shlex.split(line.split(" > ")[0])
        try:
            parser.parse_args(args)
        except SystemExit:
            pytest.fail(f"does not parse: {line[:300]}")


def test_schema_read_with_libyaml_equals_safe_load() -> None:
    """Jobs parse the schema with libyaml's parser (fast start); the result is safe_load's."""
    from histoprog.defaults import _schema

    assert _schema() == yaml.safe_load(CONFIG_SCHEMA.read_text())
