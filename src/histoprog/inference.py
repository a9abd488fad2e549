"""Models run over batches of tiles: eval mode, no gradients, float16 autocast on request.

:func:`run_model` is the one inference loop (classify, evaluate_tissue, nuclei heat maps, MIL
scoring): batches -> model input on the device -> model -> a consumer of each output.
:func:`run_on_slide_tiles` feeds it a slide's tissue tiles (:class:`~histoprog.data.SlideTiles`)
through DataLoader workers that each open the slide; :func:`predict_tiles` is the tissue
classifier's use of it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from histoprog.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SlideTiles,
    open_worker_slide,
    to_model_input,
)
from histoprog.progress import batch_len, log_progress

B = TypeVar("B")

SlideBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
"""A :class:`~histoprog.data.SlideTiles` batch: uint8 tiles, index, read ok, stain ok."""


def run_model(
    model: nn.Module,
    batches: Iterable[B],
    model_input: Callable[[B], torch.Tensor],
    consume: Callable[[B, torch.Tensor], None],
    device: torch.device,
    *,
    mixed_precision: bool = False,
) -> None:
    """Give ``consume`` every batch with the model's output for it.

    The model is moved to ``device`` and put in eval mode; no gradients are kept. With
    ``mixed_precision`` on CUDA the model runs channels-last under float16 autocast.
    """
    model.to(device).eval()
    amp = mixed_precision and device.type == "cuda"
    if amp:
        model.to(memory_format=torch.channels_last)
    autocast = torch.autocast("cuda", dtype=torch.float16) if amp else nullcontext()
    with torch.inference_mode(), autocast:
        for batch in batches:
            consume(batch, model(model_input(batch)))


def batch_slices(n: int, size: int) -> Iterator[slice]:
    """Slices of ``size`` consecutive rows (the last may be shorter) covering ``range(n)``."""
    for start in range(0, n, size):
        yield slice(start, start + size)


def run_on_slide_tiles(
    model: nn.Module,
    dataset: SlideTiles,
    consume: Callable[[SlideBatch, torch.Tensor], None],
    *,
    batch_size: int,
    workers: int,
    device: torch.device,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    mixed_precision: bool = False,
    stain_on_device: bool | None = None,
    progress: logging.Logger | None = None,
) -> float:
    """:func:`run_model` over every tile of ``dataset``; the seconds the loop took.

    Each DataLoader worker opens the slide itself; the uint8 tiles are standardised with
    ``mean``/``std`` on ``device``. ``stain_on_device`` (default: on CUDA) normalises the
    batches on ``device`` instead of in the workers where the dataset allows it
    (:meth:`~histoprog.data.SlideTiles.move_stain_to`; same bytes, less worker CPU per
    tile). ``progress``: log progress lines there.

    Raises:
        SlideError: the slide cannot be opened.
    """
    dataset.open()  # fails here, with the slide named, rather than inside a worker
    dataset.close()  # a forked worker must not share this handle
    if stain_on_device is None:
        stain_on_device = device.type == "cuda"
    stain = dataset.move_stain_to(device) if stain_on_device else None

    def model_input(batch: SlideBatch) -> torch.Tensor:
        tiles = batch[0] if stain is None else stain(batch[0])
        return to_model_input(tiles, device, mean, std)

    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        worker_init_fn=open_worker_slide,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers else None,
    )
    batches: Iterable[Any] = loader
    if progress is not None:
        batches = log_progress(loader, "tiles", total=len(dataset), size=batch_len, logger=progress)
    started = time.perf_counter()
    try:
        run_model(
            model,
            batches,
            model_input,
            consume,
            device,
            mixed_precision=mixed_precision,
        )
    finally:
        dataset.close()
        dataset.stain_in_workers = True
    return time.perf_counter() - started


@dataclass
class TilePredictions:
    """Classifier output for the tiles of a slide, in tile-table order.

    Attributes:
        probs: N x K softmax probabilities (NaN rows for unreadable tiles).
        read_ok: N flags, False where the tile could not be read.
        stain_ok: N flags, False where a per-tile stain fit failed (tile passed unchanged).
        seconds: wall time of the loop.
    """

    probs: np.ndarray
    read_ok: np.ndarray
    stain_ok: np.ndarray
    seconds: float


def predict_tiles(
    model: nn.Module,
    dataset: SlideTiles,
    *,
    batch_size: int,
    workers: int,
    device: torch.device,
    mean: Sequence[float],
    std: Sequence[float],
    stain_on_device: bool | None = None,
    progress: logging.Logger | None = None,
) -> TilePredictions:
    """Class probabilities of every tile of ``dataset`` (float16 autocast on CUDA).

    ``stain_on_device``: as in :func:`run_on_slide_tiles`. The probabilities stay on the
    device until the loop ends (no wait for the device after every batch).
    """
    n, k = len(dataset), int(model.num_classes)
    probs = np.full((n, k), np.nan, dtype=np.float32)
    read_ok = np.zeros(n, dtype=bool)
    stain_ok = np.zeros(n, dtype=bool)
    on_device: list[tuple[np.ndarray, torch.Tensor]] = []  # (rows, probabilities)

    def consume(batch: SlideBatch, logits: torch.Tensor) -> None:
        _, index, ok, fit_ok = batch
        idx = index.numpy()
        good = ok.numpy().astype(bool)
        on_device.append((idx, torch.softmax(logits.float(), dim=1)))
        read_ok[idx] = good
        stain_ok[idx] = fit_ok.numpy().astype(bool)

    started = time.perf_counter()
    run_on_slide_tiles(
        model, dataset, consume, batch_size=batch_size, workers=workers, device=device,
        mean=mean, std=std, mixed_precision=True, stain_on_device=stain_on_device,
        progress=progress,
    )  # fmt: skip
    for idx, batch_probs in on_device:
        good = read_ok[idx]
        probs[idx[good]] = batch_probs.cpu().numpy()[good]
    seconds = time.perf_counter() - started
    return TilePredictions(probs, read_ok, stain_ok, seconds)
