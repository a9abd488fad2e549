"""Model bundles: a fitted model with everything another site needs to apply it.

A bundle is a folder (``results/models/crlm_model/`` or ``results/models/hcc_model/``)
holding the model files (checkpoints, thresholds, tables), ``bundle.json`` (format version,
kind, the locked settings the model was measured at, the fitted numbers, the training
cohort's summary, package versions, date) and ``MANIFEST.json`` (sha256 of every other
file). :func:`read_bundle` refuses a bundle whose manifest does not match its files, whose
format is newer than this code, or that belongs to the other pipeline;
:func:`check_locked` refuses a configuration that differs from the bundle's locked settings.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from histoprog.defaults import RENAMED
from histoprog.errors import InputError
from histoprog.io import file_sha256, read_json, write_json
from histoprog.provenance import versions

__all__ = [
    "FORMAT_VERSION",
    "KINDS",
    "Bundle",
    "check_locked",
    "flatten",
    "locked_settings",
    "read_bundle",
    "write_bundle",
]

FORMAT_VERSION = 1
"""Bundle format written by this code; a bundle with a larger number is refused."""
KINDS = ("crlm", "hcc")
"""What a bundle holds: the CRLM SOF model or the HCC MIL model."""
RECORD = "bundle.json"
MANIFEST = "MANIFEST.json"
CONFIG_KEY = {"crlm": "crlm.model", "hcc": "hcc.model"}
"""The config key that points a run at a bundle of each kind."""
LOCKED = {
    "crlm": (
        "tile.crlm",
        "tile.mpp_tolerance",
        "tile.lowres_mpp",
        "tile.blank",
        "crlm.region",
        "stain.fit",
        "stain.fit_tiles",
        "stain.alpha",
        "stain.beta",
        "stain.io",
    ),
    "hcc": (
        "tile.hcc",
        "tile.mpp_tolerance",
        "tile.lowres_mpp",
        "tile.blank",
        "hcc.nuclei.bag_size",
        "hcc.nuclei.fit_tiles",
        "hcc.mil.tile_px_in",
        "hcc.mil.bag_size",
        "hcc.mil.threshold",
        "hcc.mil.power",
    ),
}
"""Config keys (and sections) a bundle locks: the settings its numbers were measured at."""
STAIN_TARGET = "stain_target"
"""bundle.json entry naming the bundle's stain target image (absent: the built-in one)."""


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted config keys: ``{"tile.crlm.mpp": 0.5, ...}``."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


def locked_settings(config: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """The values of the config keys a ``kind`` bundle locks, as dotted keys."""
    return {
        key: value
        for key, value in flatten(config).items()
        if any(key == p or key.startswith(p + ".") for p in LOCKED[kind])
    }


@dataclass(frozen=True)
class Bundle:
    """A checked bundle: its folder, kind and ``bundle.json`` record."""

    folder: Path
    kind: str
    record: dict[str, Any]

    def path(self, name: str) -> Path:
        """A file of the bundle (listed in its manifest)."""
        return self.folder / name

    @property
    def locked(self) -> dict[str, Any]:
        """Dotted config key -> value the model was measured at (renamed keys: new name)."""
        return {RENAMED.get(key, key): value for key, value in self.record["locked"].items()}

    def stain_target(self) -> Path | None:
        """The bundle's stain target image, or None for the normaliser's built-in one."""
        name = self.record.get(STAIN_TARGET)
        return None if name is None else self.path(name)


def write_bundle(
    folder: str | os.PathLike[str],
    kind: str,
    files: Mapping[str, str | os.PathLike[str]],
    locked: Mapping[str, Any],
    record: Mapping[str, Any],
) -> Path:
    """Write a bundle atomically (a temporary folder renamed into place).

    Args:
        folder: the bundle folder; an existing one is replaced.
        kind: ``crlm`` or ``hcc``.
        files: name in the bundle -> file to copy there.
        locked: dotted config key -> value (see :func:`flatten`), checked when applied.
        record: the rest of ``bundle.json`` (fitted numbers, cohort summary, ...).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown bundle kind {kind!r}")
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for name, src in files.items():
            shutil.copyfile(src, tmp / name)
        write_json(
            tmp / RECORD,
            {
                "format_version": FORMAT_VERSION,
                "kind": kind,
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "versions": versions(),
                "locked": dict(locked),
                **record,
            },
        )
        names = sorted([*files, RECORD])
        write_json(tmp / MANIFEST, {"files": {n: file_sha256(tmp / n) for n in names}})
        os.chmod(tmp, 0o755)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return folder


def read_bundle(folder: str | os.PathLike[str], kind: str) -> Bundle:
    """Open a bundle for ``kind`` after checking its manifest, format and kind.

    Raises:
        InputError: the folder or a file is missing, a hash differs, the format is newer
            than this code, or the bundle is for the other pipeline.
    """
    key = f"config key {CONFIG_KEY[kind]} ({folder})"
    root = Path(folder)
    if not root.is_dir():
        raise InputError(
            key,
            "the model bundle folder does not exist",
            "point it at a folder written by a discovery/training run "
            "(results/models/crlm_model or hcc_model), or set it to null to fit a model",
        )
    manifest = root / MANIFEST
    if not manifest.is_file():
        raise InputError(
            key, f"{MANIFEST} is missing", "copy the whole bundle folder as it was exported"
        )
    for name, digest in read_json(manifest)["files"].items():
        path = root / name
        if not path.is_file():
            raise InputError(
                f"model bundle file {path}",
                "is listed in the manifest but missing",
                "copy the whole bundle folder as it was exported",
            )
        if file_sha256(path) != digest:
            raise InputError(
                f"model bundle file {path}",
                "was changed after export (its sha256 differs from MANIFEST.json)",
                "restore the exported file; a bundle is applied only as it was exported",
            )
    record = read_json(root / RECORD)
    version = record.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise InputError(
            key,
            f"bundle format version {version} is newer than this histoprog reads "
            f"({FORMAT_VERSION})",
            "update histoprog to the version that exported the bundle "
            f"({record.get('versions', {}).get('histoprog', 'unknown')})",
        )
    if record.get("kind") != kind:
        raise InputError(
            key,
            f"this is a {record.get('kind')} model bundle, not a {kind} one",
            f"give it as {CONFIG_KEY.get(record.get('kind'), 'the other pipeline key')} "
            f"instead, and a {kind} bundle here",
        )
    return Bundle(root, kind, record)


def check_locked(bundle: Bundle, settings: Mapping[str, Any]) -> None:
    """Refuse config values that differ from the bundle's locked settings.

    Args:
        bundle: the bundle (:func:`read_bundle`).
        settings: the run's config as dotted keys (:func:`flatten` of the config).

    Raises:
        InputError: naming the first differing key and both values.
    """
    for key, value in bundle.locked.items():
        mine = settings.get(key)
        if mine != value:
            raise InputError(
                f"config key {key}",
                f"is {mine!r} but the model bundle {bundle.folder} was fitted at {value!r}; "
                "the model's features and thresholds mean something only at its own settings",
                f"set {key}: {value!r} (or fit a new model at your settings)",
            )
