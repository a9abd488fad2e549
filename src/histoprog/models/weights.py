"""Resolve initial weights for the backbones without ever touching the network.

A weights spec is one of:

* ``"imagenet"``: torchvision's ImageNet file for the architecture, taken from the torch hub
  cache (``torch.hub.get_dir()/checkpoints/<file>``, the place torchvision itself downloads
  to). For smp encoders the Hugging Face cache of ``smp-hub/<encoder>.imagenet`` is also
  looked at. Nothing is downloaded: when no file is there a :class:`UserWarning` names the
  file and the folder to put it in, and the model keeps its random initialisation.
* a file path: a state dict saved with ``torch.save`` (loaded with ``weights_only=True``),
  or a histoprog checkpoint (its ``state_dict`` is used), or a ``.safetensors`` file.
* ``None`` or ``"none"``: random initialisation.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from histoprog.errors import InputError

log = logging.getLogger(__name__)

WeightsSpec = str | os.PathLike[str] | None
"""``"imagenet"``, a path to a state dict, or ``None``/``"none"`` for random init."""

StateDict = dict[str, torch.Tensor]

#: torchvision's ImageNet files per architecture, preferred first. The first is the one
#: ``pretrained=True`` gave in torchvision < 0.13 (IMAGENET1K_V1), which the published
#: models were trained from; later variants are accepted when only they are cached.
TORCHVISION_FILES: dict[str, tuple[str, ...]] = {
    "resnet18": ("resnet18-f37072fd.pth",),
    "resnet34": ("resnet34-b627a593.pth",),
    "resnet50": ("resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth"),
    "mobilenet_v2": ("mobilenet_v2-b0353104.pth", "mobilenet_v2-7ebf99e0.pth"),
}

_DOWNLOAD_ROOT = "https://download.pytorch.org/models/"


def hub_checkpoint_dir() -> Path:
    """The folder torchvision caches downloaded weights in (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def expected_imagenet_path(arch: str) -> Path:
    """Where the preferred ImageNet file for ``arch`` is looked for."""
    return hub_checkpoint_dir() / _files_for(arch)[0]


def find_imagenet_file(arch: str) -> Path | None:
    """The first cached ImageNet file for ``arch`` (torchvision cache, then smp's), or None."""
    for name in _files_for(arch):
        candidate = hub_checkpoint_dir() / name
        if candidate.is_file():
            return candidate
    return _find_smp_hub_file(arch)


def is_imagenet(spec: WeightsSpec) -> bool:
    """Whether ``spec`` asks for the cached ImageNet weights."""
    return isinstance(spec, str) and spec.strip().lower() == "imagenet"


def require_cached_imagenet(spec: WeightsSpec, arch: str) -> None:
    """Stop when ``spec`` is ``"imagenet"`` and no file is cached for ``arch``.

    For real runs (config ``require_imagenet_weights``): a model that silently starts from
    random weights is not the published method.

    Raises:
        InputError: naming the file, the folder to put it in and the key that allows
            random initialisation.
    """
    if not is_imagenet(spec) or find_imagenet_file(arch) is not None:
        return
    expected = expected_imagenet_path(arch)
    raise InputError(
        f"ImageNet weights for {arch}",
        f"are not cached (looked for {expected}, and the segmentation-models-pytorch "
        "Hugging Face cache for U-net encoders); nothing is downloaded at run time",
        f"download {_DOWNLOAD_ROOT}{expected.name} into {expected.parent} (set TORCH_HOME "
        "to move that folder; see README 'Model weights'), or give a weights file, or set "
        "require_imagenet_weights: false in config.yaml to train from random weights",
    )


def resolve_weights(spec: WeightsSpec, arch: str) -> tuple[StateDict | None, str]:
    """Turn a weights spec into a state dict.

    Args:
        spec: ``"imagenet"``, a path, or ``None``/``"none"``.
        arch: torchvision architecture name (``resnet18``, ``resnet34``, ``resnet50``,
            ``mobilenet_v2``); names the ImageNet file.

    Returns:
        ``(state_dict, source)``; ``state_dict`` is None for random initialisation and
        ``source`` describes where the weights came from (for provenance), e.g.
        ``"imagenet:/root/.cache/torch/hub/checkpoints/resnet50-0676ba61.pth"``, ``"random"``.

    Raises:
        InputError: unknown spec or architecture, missing or unreadable weights file.
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in {"none", ""}):
        return None, "random"
    if is_imagenet(spec):
        found = find_imagenet_file(arch)
        if found is None:
            expected = expected_imagenet_path(arch)
            warnings.warn(
                f"ImageNet weights for {arch} are not cached (expected {expected}); "
                f"using random initialisation. To use them, download "
                f"{_DOWNLOAD_ROOT}{expected.name} and put it in {expected.parent} "
                "(set TORCH_HOME to move that folder), or give the file's path as the "
                "weights setting.",
                UserWarning,
                stacklevel=3,
            )
            return None, "random (imagenet weights not found)"
        return read_state_dict(found), f"imagenet:{found}"
    path = Path(os.fspath(spec)).expanduser()
    if not path.is_file():
        raise InputError(
            f"weights file '{path}'",
            "does not exist" if not path.exists() else "is not a file",
            "give the path of a state dict saved with torch.save, 'imagenet' (uses the torch "
            "hub cache) or 'none' for random initialisation",
        )
    return read_state_dict(path), f"file:{path}"


def read_state_dict(path: str | os.PathLike[str]) -> StateDict:
    """Read a state dict (``torch.save`` with ``weights_only=True``, or safetensors).

    A histoprog checkpoint or a ``{"state_dict": ...}`` / ``{"model": ...}`` wrapper gives
    its inner state dict.
    """
    path = Path(path)
    what = f"weights file '{path}'"
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(os.fspath(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bad files
        raise InputError(
            what,
            f"cannot be read as PyTorch weights ({type(exc).__name__}: {exc}); the file is "
            "truncated, corrupt or not a weights file",
            "delete it and download or copy it again",
        ) from exc
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, Mapping):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise InputError(
            what,
            "does not hold a state dict (a mapping of parameter names to tensors)",
            "save the weights with torch.save(model.state_dict(), path)",
        )
    return dict(obj)


def load_weights(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    source: str,
    optional_prefixes: Sequence[str] = (),
) -> None:
    """Load ``state`` into ``module``, strictly except for optional parts (e.g. a new head).

    Keys under ``optional_prefixes`` are loaded when the name and shape match and otherwise
    left at their initialisation (an ImageNet ``fc`` for a new head, or a head with another
    number of classes). Every other parameter and buffer must be present with its shape.

    Raises:
        InputError: missing, unexpected or mis-shaped keys outside the optional parts.
    """
    own = module.state_dict()

    def optional(key: str) -> bool:
        return any(key.startswith(p) for p in optional_prefixes)

    to_load: StateDict = {}
    problems: list[str] = []
    skipped: list[str] = []
    for key, value in state.items():
        if key not in own:
            if optional(key):
                skipped.append(key)
            else:
                problems.append(f"unexpected key '{key}'")
        elif own[key].shape != value.shape:
            if optional(key):
                skipped.append(key)
            else:
                problems.append(
                    f"'{key}' has shape {tuple(value.shape)}, model needs {tuple(own[key].shape)}"
                )
        else:
            to_load[key] = value
    missing = [k for k in own if k not in state and not optional(k)]
    problems += [f"missing key '{k}'" for k in missing]
    if problems:
        more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        shown = "; ".join(problems[:5]) + more
        raise InputError(
            f"weights from {source}",
            f"do not fit the {type(module).__name__} architecture: {shown}",
            "use weights saved from the same architecture (backbone) or 'none'",
        )
    module.load_state_dict(to_load, strict=False)
    if skipped:
        log.info("weights from %s: left %d head entries as initialised", source, len(skipped))


def _files_for(arch: str) -> tuple[str, ...]:
    try:
        return TORCHVISION_FILES[arch]
    except KeyError:
        raise InputError(
            f"architecture '{arch}'",
            "has no known ImageNet weights file",
            f"use one of {sorted(TORCHVISION_FILES)} or give a weights file path or 'none'",
        ) from None


def _find_smp_hub_file(arch: str) -> Path | None:
    """Find smp's own ImageNet encoder file in the Hugging Face cache, if one is there (offline)."""
    try:
        from huggingface_hub import try_to_load_from_cache
        from segmentation_models_pytorch.encoders import encoders
    except ImportError:  # pragma: no cover - both are dependencies
        return None
    settings = encoders.get(arch, {}).get("pretrained_settings", {}).get("imagenet")
    if not settings:
        return None
    try:
        found = try_to_load_from_cache(
            settings["repo_id"], "model.safetensors", revision=settings.get("revision")
        )
    except Exception:  # a malformed cache is the same as no cache here
        return None
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None
