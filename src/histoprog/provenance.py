"""What made an output: package versions and parameters, recorded in every per-slide file."""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

from histoprog import __version__

_PACKAGES = ("openslide-python", "openslide-bin", "numpy", "torch", "torchstain")


def versions() -> dict[str, str]:
    """Versions of histoprog, Python and the packages whose behaviour shapes outputs."""
    found = {"histoprog": __version__, "python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def provenance(params: dict[str, Any]) -> dict[str, Any]:
    """The block stored under ``provenance`` in per-slide JSON outputs."""
    return {"versions": versions(), "params": params}
