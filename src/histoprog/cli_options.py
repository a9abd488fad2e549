"""Command-line options that several commands share, each defined once.

Every ``add_*`` function adds a group of options to a subcommand's parser; the flags and
types are those the workflow's rules pass, and an option's default is its config key's
(:func:`histoprog.defaults.default`).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from histoprog.defaults import default

if TYPE_CHECKING:
    from histoprog.sof import RegionParams
    from histoprog.stain import MacenkoNormalizer


def add_slide_options(
    parser: argparse.ArgumentParser, *, slide_file: bool = True, patient_id: bool = False
) -> None:
    """``--slide`` (the file; unless ``slide_file`` is false), ``--slide-id``, ``--patient-id``."""
    if slide_file:
        parser.add_argument("--slide", required=True, help="slide file")
    parser.add_argument("--slide-id", required=True)
    if patient_id:
        parser.add_argument("--patient-id", required=True)


def add_tile_inputs(parser: argparse.ArgumentParser) -> None:
    """``--tiles`` and ``--tiles-meta``: the slide's outputs of ``histoprog tile``."""
    parser.add_argument("--tiles", required=True, help="tile table from `histoprog tile`")
    parser.add_argument("--tiles-meta", required=True, help="tiles.json from `histoprog tile`")


def add_target_image(parser: argparse.ArgumentParser, what: str) -> None:
    """``--target-image``: the stain normaliser's target image (default: its reference)."""
    parser.add_argument("--target-image", default=default("stain.target_image"), help=what)


def add_torch_options(
    parser: argparse.ArgumentParser,
    *,
    batch_size: int | None = None,
    workers: int | None = None,
    section: str = "tissue",
) -> None:
    """``--batch-size``/``--workers`` (where defaults are given), ``--threads``, ``--device``.

    ``--device`` defaults to config ``<section>.device``; ``--threads`` to torch's own.
    """
    if batch_size is not None:
        parser.add_argument("--batch-size", type=int, default=batch_size)
    if workers is not None:
        parser.add_argument(
            "--workers", type=int, default=workers, help="DataLoader worker processes"
        )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default=default(f"{section}.device"), help="auto | cpu | cuda")


def add_seed(parser: argparse.ArgumentParser, key: str) -> None:
    """``--seed``, default config ``key``."""
    parser.add_argument("--seed", type=int, default=default(key))


def add_outcome_options(parser: argparse.ArgumentParser, pipeline: str) -> None:
    """``--time`` and ``--event``: the clinical outcome columns (config ``clinical.<pipeline>``)."""
    parser.add_argument(
        "--time", default=default(f"clinical.{pipeline}.time"), help="time column (months)"
    )
    parser.add_argument(
        "--event", default=default(f"clinical.{pipeline}.event"), help="event column (0/1)"
    )


def add_threshold_option(parser: argparse.ArgumentParser) -> None:
    """``--threshold``: the MIL score threshold t (config ``hcc.mil.threshold``)."""
    parser.add_argument(
        "--threshold",
        type=float,
        default=default("hcc.mil.threshold"),
        help="MIL score threshold t: high risk when S >= t",
    )


def add_outputs(parser: argparse.ArgumentParser, **outputs: str) -> None:
    """A required ``--out-<name>`` path per keyword (``_`` becomes ``-``); its value: help."""
    for name, what in outputs.items():
        parser.add_argument(f"--out-{name.replace('_', '-')}", required=True, help=what)


def add_cohort_slides(parser: argparse.ArgumentParser) -> None:
    """``--slides-dir`` (a cohort's per-slide folders) and ``--slide-ids`` (in sheet order)."""
    parser.add_argument("--slides-dir", required=True, help="results/<cohort>/slides")
    parser.add_argument("--slide-ids", nargs="+", required=True)


def add_region_options(parser: argparse.ArgumentParser) -> None:
    """The tumour-region options (config ``crlm.region``)."""
    for name in ("dilation", "erosion", "min_component_tiles", "min_tumour_tiles"):
        flag = f"--{name.replace('_', '-')}"
        parser.add_argument(flag, type=int, default=default(f"crlm.region.{name}"))


def region_params(args: argparse.Namespace) -> RegionParams:
    """RegionParams from the options :func:`add_region_options` adds."""
    from histoprog.sof import RegionParams

    return RegionParams(
        dilation=args.dilation,
        erosion=args.erosion,
        min_component_tiles=args.min_component_tiles,
        min_tumour_tiles=args.min_tumour_tiles,
    )


def bag_size(text: str) -> int | None:
    """Type of ``--bag-size``: ``all`` -> None, else a positive integer."""
    if text.lower() == "all":
        return None
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("bag size must be >= 1 or 'all'")
    return value


def add_patch_stain_options(parser: argparse.ArgumentParser) -> None:
    """Patch stain options (the same target as the slides' ``stain`` stage)."""
    parser.add_argument(
        "--stain",
        choices=["tile", "none"],
        default=default("tissue.patch_stain"),
        help="tile: Macenko-normalise each patch; none: patches are already normalised",
    )
    add_macenko_options(parser)


def add_macenko_options(parser: argparse.ArgumentParser) -> None:
    """The Macenko target (config ``stain``): ``--target-image``, ``--alpha/--beta/--io``."""
    add_target_image(parser, "Macenko target image")
    for name in ("alpha", "beta", "io"):
        parser.add_argument(f"--{name}", type=float, default=float(default(f"stain.{name}")))


def macenko_normalizer(args: argparse.Namespace) -> MacenkoNormalizer:
    """The Macenko normaliser the options of :func:`add_macenko_options` set."""
    from histoprog.stain import MacenkoNormalizer, load_target  # torch: only where needed

    return MacenkoNormalizer(
        load_target(args.target_image), args.io, alpha=args.alpha, beta=args.beta
    )


def patch_normalizer(args: argparse.Namespace) -> MacenkoNormalizer | None:
    """The patches' normaliser (:func:`add_patch_stain_options`): Macenko or None."""
    return macenko_normalizer(args) if args.stain == "tile" else None


def add_require_weights(parser: argparse.ArgumentParser) -> None:
    """``--require-weights``: stop when ``--weights imagenet`` finds no cached file."""
    parser.add_argument(
        "--require-weights",
        action="store_true",
        help="stop when ImageNet weights are asked for but not cached (instead of a warning "
        "and random initialisation)",
    )


def check_required_weights(args: argparse.Namespace, arch: str) -> None:
    """With ``--require-weights``: stop when ``--weights imagenet`` finds no file for ``arch``."""
    if args.require_weights:
        from histoprog.models.weights import require_cached_imagenet  # torch: only here

        require_cached_imagenet(args.weights, arch)
