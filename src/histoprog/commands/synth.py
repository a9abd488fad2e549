"""``histoprog synth``: synthetic data with planted truth (METHODS section 7).

Sub-subcommands:

* ``synth cohort --spec S.yaml --out DIR [--no-slides]``: slides, slides.tsv,
  clinical.tsv and truth/ (see :mod:`histoprog.synth.cohort`);
* ``synth patches --out DIR --set crc|crlm --n-per-class N``: ImageFolder patch sets;
* ``synth nuclei --out DIR --n-images N --size PX``: nucleus image/mask pairs;
* ``synth large-slide --out FILE --size-px 40000``: one huge slide, streamed; reports
  time and peak memory.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
from pathlib import Path

from histoprog.defaults import default
from histoprog.errors import InputError

log = logging.getLogger("histoprog.synth")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``synth`` subcommand and its sub-subcommands."""
    parser = subparsers.add_parser(
        "synth", help="generate synthetic cohorts, patches, nuclei pairs or a large slide"
    )
    sub = parser.add_subparsers(dest="synth_command", required=True)

    p = sub.add_parser("cohort", help="a cohort with slides, tables and planted truth")
    p.add_argument("--spec", required=True, help="cohort spec (YAML)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-slides", action="store_true", help="write tables and truth only")
    p.add_argument("--workers", type=int, default=1, help="JPEG compression threads")
    p.set_defaults(func=run_cohort)

    p = sub.add_parser("patches", help="labelled patch folders (ImageFolder layout)")
    p.add_argument("--out", required=True, help="output folder (one subfolder per class)")
    p.add_argument("--set", dest="class_set", choices=("crc", "crlm"), default="crlm")
    p.add_argument("--n-per-class", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=224, help="patch side (px)")
    p.add_argument("--mpp", type=float, default=0.5)
    p.add_argument("--stain-jitter", type=float, default=1.0)
    p.add_argument("--jpeg-quality", type=int, default=85, help="0 = no JPEG round trip")
    p.set_defaults(func=run_patches)

    p = sub.add_parser("nuclei", help="nucleus image/mask pairs (MoNuSeg-like layout)")
    p.add_argument("--out", required=True, help="output folder (images/, masks/)")
    p.add_argument("--n-images", type=int, default=default("hcc.synth_nuclei.n_images"))
    p.add_argument(
        "--size", type=int, default=default("hcc.synth_nuclei.size"), help="image side (px)"
    )
    p.add_argument("--mpp", type=float, default=default("hcc.synth_nuclei.mpp"))
    p.add_argument("--seed", type=int, default=default("hcc.synth_nuclei.seed"))
    p.add_argument("--stain-jitter", type=float, default=1.0)
    p.set_defaults(func=run_nuclei)

    p = sub.add_parser("large-slide", help="one large slide streamed with bounded memory")
    p.add_argument("--out", required=True, help="slide file (.tiff or .svs)")
    p.add_argument("--size-px", type=int, default=40000, help="minimum level-0 side")
    p.add_argument(
        "--format",
        dest="fmt",
        choices=("tiff", "svs"),
        default=None,
        help="default: from the suffix",
    )
    p.add_argument("--mpp", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--level-factor", type=int, choices=(2, 4), default=4)
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--quality", type=int, default=80)
    p.add_argument("--grid-out", default=None, help="optional .npy for the true grid")
    p.set_defaults(func=run_large_slide)


def run_cohort(args: argparse.Namespace) -> None:
    """``synth cohort``."""
    from histoprog.synth.cohort import generate_cohort
    from histoprog.synth.spec import load_spec

    spec = load_spec(args.spec)
    if args.workers < 1:
        raise InputError("--workers", f"must be >= 1, got {args.workers}", "use 1 or more")
    generate_cohort(spec, args.out, write_slides=not args.no_slides, workers=args.workers)


def run_patches(args: argparse.Namespace) -> None:
    """``synth patches``."""
    from histoprog.synth.patches import write_patches

    counts = write_patches(
        args.out,
        class_set=args.class_set,
        n_per_class=args.n_per_class,
        seed=args.seed,
        size=args.size,
        mpp=args.mpp,
        stain_jitter=args.stain_jitter,
        jpeg_quality=args.jpeg_quality or None,
    )
    log.info("patches: %s", counts)


def run_nuclei(args: argparse.Namespace) -> None:
    """``synth nuclei``."""
    from histoprog.synth.nuclei_pairs import write_nuclei_pairs

    names = write_nuclei_pairs(
        args.out,
        n_images=args.n_images,
        size=args.size,
        mpp=args.mpp,
        seed=args.seed,
        stain_jitter=args.stain_jitter,
    )
    log.info("nuclei: %d image/mask pairs in %s", len(names), args.out)


def run_large_slide(args: argparse.Namespace) -> None:
    """``synth large-slide``: also prints a JSON line with size, time and peak RSS."""
    from histoprog.synth.large import write_large_slide

    fmt = args.fmt or ("svs" if Path(args.out).suffix.lower() == ".svs" else "tiff")
    info = write_large_slide(
        args.out,
        args.size_px,
        mpp=args.mpp,
        fmt=fmt,
        seed=args.seed,
        levels=args.levels,
        factor=args.level_factor,
        tile=args.tile,
        quality=args.quality,
        grid_path=args.grid_out,
    )
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    report = {
        "path": str(info.path),
        "width": info.size[0],
        "height": info.size[1],
        "seconds": round(info.seconds, 2),
        "file_mib": round(info.bytes / 2**20, 1),
        "peak_rss_mib": round(peak_mib, 1),
    }
    print(json.dumps(report))
