"""Where torch computes: the device (``--device``) and the CPU threads (``--threads``)."""

from __future__ import annotations

import torch

from histoprog.errors import InputError


def select_device(spec: str = "auto") -> torch.device:
    """``"auto"`` = CUDA when available, else CPU; or ``"cpu"``/``"cuda"``/``"cuda:1"``."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as err:
        raise InputError(
            "device", f"'{spec}' is not a device ({err})", "use auto, cpu or cuda"
        ) from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(
            "device", f"'{spec}' asked for, but CUDA is not available", "use auto or cpu"
        )
    return device


def set_threads(threads: int | None) -> None:
    """Limit torch's CPU threads (``None`` or 0: torch's default)."""
    if threads:
        torch.set_num_threads(threads)
