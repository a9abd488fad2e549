"""Model checkpoints: state dict + the metadata needed to rebuild and check the model.

A checkpoint is a ``torch.save``-d dict of plain types and tensors, so it loads with
``torch.load(..., weights_only=True)``::

    {"format": "histoprog-checkpoint", "format_version": 1, "kind": "tissue_classifier",
     "architecture": {...}, "class_names": [...], "normalisation": {...}, "config": {...},
     "metrics": {...}, "histoprog_version": "...", "torch_version": "...",
     "torchvision_version": "...", "state_dict": {...}}

Kinds and their ``architecture`` keys (see :func:`architecture_of`):

* ``tissue_classifier``: ``backbone``, ``num_classes`` (input: 3 channels, RGB);
* ``unet``: ``encoder``, ``in_channels`` (3, RGB; output: the nuclei heat map);
* ``mil``: ``in_channels`` (4: RGB + nuclei heat map), optional ``dropout``.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

import histoprog
from histoprog.errors import InputError
from histoprog.io import atomic_path, file_sha256

FORMAT = "histoprog-checkpoint"
FORMAT_VERSION = 1

#: input channels the workflow feeds each kind of model
DEFAULT_IN_CHANNELS = {"tissue_classifier": 3, "unet": 3, "mil": 4}
KINDS = tuple(DEFAULT_IN_CHANNELS)

_DESCRIPTION = {
    "tissue_classifier": "tissue classifier",
    "unet": "nuclei U-net (heat-map model)",
    "mil": "MIL MobileNetV2",
}


def _build(kind: str, arch: Mapping[str, Any]) -> nn.Module:
    """Rebuild an untrained model of ``kind`` from its architecture dict (random init)."""
    if kind == "tissue_classifier":
        from histoprog.models.tissue import build_tissue_classifier

        return build_tissue_classifier(
            int(arch["num_classes"]), backbone=str(arch.get("backbone", "resnet50")), weights=None
        )
    if kind == "unet":
        from histoprog.models.nets import UNET_RESNETS, UNet

        encoder = str(arch.get("encoder", "resnet34"))
        in_channels = int(arch.get("in_channels", 3))
        if encoder in UNET_RESNETS and in_channels == 3:
            # smp's layout without importing smp (and its timm and torchvision)
            return UNet(encoder)
        from histoprog.models.unet import build_unet

        return build_unet(encoder=encoder, encoder_weights=None, in_channels=in_channels)
    if kind == "mil":
        from histoprog.models.mil import build_mil_mobilenet

        return build_mil_mobilenet(
            weights=None,
            in_channels=int(arch.get("in_channels", 4)),
            dropout=float(arch.get("dropout", 0.2)),
        )
    raise InputError(f"checkpoint kind '{kind}'", "is unknown", f"use one of {list(KINDS)}")


_REQUIRED: dict[str, tuple[str, ...]] = {
    "tissue_classifier": ("backbone", "num_classes"),
    "unet": ("encoder",),
    "mil": ("in_channels",),
}


def architecture_of(model: nn.Module, kind: str) -> dict[str, Any]:
    """The ``architecture`` dict for a model built by this package."""
    if kind == "tissue_classifier":
        return {"backbone": model.backbone, "num_classes": int(model.fc[-1].out_features)}
    if kind == "unet":
        channels = _first_conv_channels(model.state_dict())
        return {"encoder": model.encoder_name, "in_channels": channels}
    if kind == "mil":
        return {
            "in_channels": int(model.features[0][0].in_channels),
            "dropout": float(model.classifier[0].p),
        }
    raise ValueError(f"unknown kind {kind!r}; use one of {list(KINDS)}")


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    kind: str,
    architecture: Mapping[str, Any],
    class_names: Sequence[str] | None,
    normalisation: Mapping[str, Any],
    config: Mapping[str, Any],
    metrics: Mapping[str, Any],
) -> Path:
    """Save ``model``'s state dict (on CPU) with its metadata, atomically.

    Args:
        path: the output file (``.pt``).
        model: the model.
        kind: ``tissue_classifier``, ``unet`` or ``mil``.
        architecture: what :func:`load_checkpoint` rebuilds the model from
            (:func:`architecture_of` gives it).
        class_names: output classes in output order (tissue classifier: one per logit).
        normalisation: input preprocessing (e.g. mean/std, stain method, mpp, tile size).
        config: the settings that made the model (JSON-like; paths become strings).
        metrics: validation metrics, epoch, etc.

    Returns:
        The path written. The same model and metadata give a byte-identical file.

    Raises:
        ValueError: unknown kind, missing architecture keys, class names that do not match
            the number of outputs, or a state dict that the architecture does not rebuild.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; use one of {list(KINDS)}")
    missing = [k for k in _REQUIRED[kind] if k not in architecture]
    if missing:
        raise ValueError(f"architecture for {kind} lacks {missing}")
    names = [str(c) for c in class_names] if class_names is not None else None
    n_out = int(architecture["num_classes"]) if kind == "tissue_classifier" else None
    if n_out is not None and (names is None or len(names) != n_out):
        raise ValueError(
            f"{len(names or [])} class names for a {architecture['num_classes']}-class classifier"
        )
    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    with torch.device("meta"):
        reference = _build(kind, architecture).state_dict()
    mismatch = _state_mismatch(reference, state)
    if mismatch:
        raise ValueError(f"model does not match architecture {dict(architecture)}: {mismatch}")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "architecture": _plain(architecture),
        "class_names": names,
        "normalisation": _plain(normalisation),
        "config": _plain(config),
        "metrics": _plain(metrics),
        "histoprog_version": histoprog.__version__,
        "torch_version": str(torch.__version__),
        "torchvision_version": _torchvision_version(),
        "state_dict": state,
    }
    buffer = io.BytesIO()  # not the temp file: torch names the archive after the file
    torch.save(payload, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return Path(path)


def _torchvision_version() -> str:
    """The torchvision version, imported only here (saving is training; loading needs none)."""
    import torchvision

    return str(torchvision.__version__)


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    expected_kind: str,
    expected_class_names: Sequence[str] | None = None,
    expected_in_channels: int | None = None,
    map_location: str | torch.device = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint` and rebuild its model.

    Args:
        path: the checkpoint file.
        expected_kind: the kind the caller needs.
        expected_class_names: class names from the config; the checkpoint's must be equal,
            in the same order.
        expected_in_channels: input channels the caller feeds; default per kind
            (``DEFAULT_IN_CHANNELS``: 4 for ``mil``, 3 otherwise).
        map_location: device for the tensors.

    Returns:
        ``(model, metadata)``: the model in eval mode and the checkpoint's metadata (all
        fields except ``state_dict``) plus ``path`` and ``sha256`` of the file.

    Raises:
        InputError: missing, truncated or corrupt file; not a histoprog checkpoint; wrong
            kind, class names or input channels; weights that do not fit the architecture.
    """
    path = Path(path)
    what = f"model checkpoint '{path}'"
    if not path.is_file():
        raise InputError(
            what,
            "does not exist" if not path.exists() else "is not a file",
            "train the model first (its training rule writes this file) or correct the path "
            "in the config",
        )
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, pickle errors, unsafe globals, ...
        raise InputError(
            what,
            f"cannot be read; the file is truncated or corrupt, or not a histoprog checkpoint "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
            "delete it and re-run the training rule (or copy the file again)",
        ) from exc
    if not isinstance(obj, dict) or obj.get("format") != FORMAT or "state_dict" not in obj:
        raise InputError(
            what,
            "is not a histoprog checkpoint (a bare state dict or another tool's file?)",
            "use a model file written by histoprog's training rules",
        )
    if obj.get("format_version", 0) > FORMAT_VERSION:
        raise InputError(
            what,
            f"has format version {obj.get('format_version')}, newer than this histoprog "
            f"({histoprog.__version__}) reads",
            "update histoprog",
        )
    kind = obj.get("kind")
    if kind != expected_kind:
        raise InputError(
            what,
            f"holds a {_DESCRIPTION.get(kind, repr(kind))} ('{kind}'), but a "
            f"{_DESCRIPTION.get(expected_kind, expected_kind)} ('{expected_kind}') is needed here",
            f"point this setting at a '{expected_kind}' checkpoint",
        )
    names = obj.get("class_names")
    if expected_class_names is not None and list(names or []) != [
        str(c) for c in expected_class_names
    ]:
        raise InputError(
            what,
            f"was trained for classes {list(names or [])}, but the config lists "
            f"{[str(c) for c in expected_class_names]} (same names in the same order needed)",
            "make the config's class names match the model, or use a model trained for them",
        )
    arch = dict(obj.get("architecture") or {})
    state = obj["state_dict"]
    channels = _first_conv_channels(state)
    wanted = expected_in_channels if expected_in_channels is not None else DEFAULT_IN_CHANNELS[kind]
    if channels is not None and channels != wanted:
        extra = " (RGB + nuclei heat map)" if kind == "mil" and wanted == 4 else ""
        raise InputError(
            what,
            f"is a {_DESCRIPTION[kind]} taking {channels} input channels, but {wanted}"
            f"{extra} are fed to it",
            "use a model trained on the same input channels"
            + (" (retrain the MIL model with heat maps)" if kind == "mil" else ""),
        )
    try:
        model = _build(kind, arch)
    except (KeyError, ValueError, TypeError) as exc:
        raise InputError(
            what, f"has an unusable architecture record {arch} ({exc})", "re-save the model"
        ) from exc
    mismatch = _state_mismatch(model.state_dict(), state)
    if mismatch:
        raise InputError(
            what,
            f"holds weights that do not fit its recorded architecture {arch}: {mismatch}",
            "re-train or re-save the model",
        )
    model.load_state_dict(state)
    model.to(map_location)
    metadata = {k: v for k, v in obj.items() if k != "state_dict"}
    metadata["path"] = str(path)
    metadata["sha256"] = file_sha256(path)
    model.init_source = f"checkpoint:{path}"
    return model.eval(), metadata


def _plain(value: Mapping[str, Any]) -> dict[str, Any]:
    """JSON round trip: only types ``weights_only`` loading accepts (numpy, paths -> plain)."""
    return json.loads(json.dumps(dict(value), default=_to_json))


def _to_json(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays, tensors
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _first_conv_channels(state: Mapping[str, torch.Tensor]) -> int | None:
    """Input channels of the first 4-D weight (the stem convolution) in a state dict."""
    for key, value in state.items():
        if key.endswith("weight") and isinstance(value, torch.Tensor) and value.ndim == 4:
            return int(value.shape[1])
    return None


def _state_mismatch(
    reference: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]
) -> str:
    """'' when keys and shapes agree, else a short description of the differences."""
    problems: list[str] = []
    problems += [f"missing '{k}'" for k in reference if k not in state]
    problems += [f"unexpected '{k}'" for k in state if k not in reference]
    problems += [
        f"'{k}' is {tuple(state[k].shape)}, needs {tuple(v.shape)}"
        for k, v in reference.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if len(problems) > 4:
        problems = problems[:4] + [f"and {len(problems) - 4} more"]
    return "; ".join(problems)
