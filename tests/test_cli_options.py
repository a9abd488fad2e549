"""Shared command-line options: names, defaults and the bag-size type."""

from __future__ import annotations

import argparse

import pytest

from histoprog.cli_options import (
    add_outputs,
    add_region_options,
    add_slide_options,
    add_torch_options,
    bag_size,
    region_params,
)
from histoprog.sof import RegionParams


def test_bag_size() -> None:
    assert bag_size("all") is None and bag_size("ALL") is None
    assert bag_size("16") == 16
    with pytest.raises(argparse.ArgumentTypeError, match=">= 1 or 'all'"):
        bag_size("0")


def test_option_groups_parse_to_the_commands_names_and_defaults() -> None:
    parser = argparse.ArgumentParser()
    add_slide_options(parser, slide_file=False, patient_id=True)
    add_torch_options(parser, batch_size=64)
    add_outputs(parser, score="record", tiles_table="table")
    add_region_options(parser)
    args = parser.parse_args(
        ["--slide-id", "S", "--patient-id", "P", "--out-score", "s.json",
         "--out-tiles-table", "t.tsv", "--erosion", "2"]
    )  # fmt: skip
    assert (args.slide_id, args.patient_id, args.out_score, args.out_tiles_table) == (
        "S", "P", "s.json", "t.tsv"
    )  # fmt: skip
    assert (args.batch_size, args.threads, args.device) == (64, None, "auto")
    assert not hasattr(args, "workers") and not hasattr(args, "slide")
    assert region_params(args) == RegionParams(erosion=2)
    with pytest.raises(SystemExit):  # outputs are required
        parser.parse_args(["--slide-id", "S", "--patient-id", "P"])
