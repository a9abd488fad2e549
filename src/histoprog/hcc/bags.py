"""A slide's MIL bag: tiles, Vahadane normalisation, nuclei heat maps (METHODS 6.2-6.3).

The ``nuclei`` stage reads up to ``bag_size`` random tissue tiles of a slide (seeded; all
tiles with ``bag_size="all"``) at the HCC tile scale (512 px at 0.25 mpp, resized to
``tile_px`` = 224 in the same read), fits the slide's Vahadane stain parameters on up to
``fit_tiles`` of them, normalises every tile with them, runs the U-net and stores
everything in one compressed ``.npz`` (:data:`BAG_KEYS`).

The MIL model's input (:func:`bag_input`) is the ImageNet-standardised RGB plus the heat
map standardised with :data:`HEAT_MEAN` / :data:`HEAT_STD` as a 4th channel.
"""

from __future__ import annotations

import dataclasses
import math
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from histoprog.data import IMAGENET_MEAN, IMAGENET_STD, SlideTiles
from histoprog.errors import InputError, SlideError
from histoprog.hcc.unet import heat_from_logits
from histoprog.inference import SlideBatch, run_on_slide_tiles
from histoprog.io import atomic_path
from histoprog.slides import ReadPlan, open_slide, read_tile
from histoprog.stain import VahadaneNormalizer, VahadaneParams

#: arrays of a bag file: tiles (N x H x W x 3 uint8, normalised), heat (N x H x W uint8),
#: grid index and level-0 corner of each tile
BAG_KEYS = ("tiles", "heat", "row", "col", "x", "y")

#: heat-map channel standardisation: (h / 255 - 0.5) / 0.5, i.e. [-1, 1]
HEAT_MEAN = 0.5
HEAT_STD = 0.5

#: pixels pooled for a slide's Vahadane fit (optical densities, tissue mask, the 99th
#: percentile concentrations); the dictionary learning itself uses 2000 of them
FIT_PIXELS = 500_000


def scaled_plan(plan: ReadPlan, tile_px: int) -> ReadPlan:
    """The tile stage's read plan with tiles resized to ``tile_px`` in the read itself."""
    return dataclasses.replace(
        plan, tile_px=tile_px, effective_mpp=plan.effective_mpp * plan.tile_px / tile_px
    )


def choose_bag(n_tiles: int, bag_size: int | None, seed: int) -> np.ndarray:
    """Sorted indices of up to ``bag_size`` random tiles (all when ``None``), seeded."""
    if bag_size is None or bag_size >= n_tiles:
        return np.arange(n_tiles)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_tiles, size=bag_size, replace=False))


@dataclass
class Bag:
    """One slide's bag (arrays as in :data:`BAG_KEYS`)."""

    tiles: np.ndarray
    heat: np.ndarray
    row: np.ndarray
    col: np.ndarray
    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.tiles)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a compressed ``.npz`` atomically.

        Deflate level 1: about as small as ``numpy.savez_compressed`` (level 6) on tile
        images, in half the time.
        """
        with atomic_path(path) as tmp:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
                for key in BAG_KEYS:
                    with archive.open(f"{key}.npy", "w", force_zip64=True) as fh:
                        np.lib.format.write_array(fh, np.ascontiguousarray(getattr(self, key)))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Bag:
        """Read a bag file; raises InputError when it is not one or holds no tiles."""
        try:
            with np.load(path) as data:
                arrays = {k: data[k] for k in BAG_KEYS}
        except (OSError, KeyError, ValueError) as err:
            raise InputError(
                f"bag file '{path}'",
                f"is not a histoprog nuclei bag ({type(err).__name__}: {err})",
                "re-run the nuclei rule for this slide",
            ) from err
        bag = cls(**arrays)
        if len(bag) == 0:
            raise InputError(
                f"bag file '{path}'",
                "holds no tiles (the slide has no tissue tiles)",
                "check the slide's tissue mask; remove the slide from the cohort",
            )
        return bag


def subsample_pixels(tiles: Sequence[np.ndarray], max_pixels: int) -> list[np.ndarray]:
    """Every ``k``-th row and column of each tile, keeping at most ``max_pixels`` in all.

    ``k`` is the smallest stride that does; the stain fit's statistics need no more.
    """
    total = sum(t.shape[0] * t.shape[1] for t in tiles)
    k = max(1, math.ceil(math.sqrt(total / max_pixels)))
    return [t[::k, ::k] for t in tiles]


def fit_stain(
    slide_path: str, slide_id: str, plan: ReadPlan, xy: np.ndarray, normalizer: VahadaneNormalizer
) -> VahadaneParams:
    """Fit the slide's Vahadane parameters on the tiles at ``xy`` (read raw).

    Raises:
        SlideError: the fit fails (too few tissue pixels, one stain only).
    """
    slide = open_slide(slide_path, slide_id)
    try:
        tiles = [read_tile(slide, plan, int(x), int(y)) for x, y in xy]
    finally:
        slide.close()
    try:
        return normalizer.fit(subsample_pixels(tiles, FIT_PIXELS))
    except InputError as err:
        raise SlideError(
            f"slide '{slide_id}'",
            f"the Vahadane stain fit on {len(tiles)} tissue tiles failed ({err.problem})",
            "check the slide's tissue mask QC image; remove the slide if it has no H&E tissue",
        ) from err


@dataclass
class BagRun:
    """A built bag with what happened: unreadable tiles dropped and timing."""

    bag: Bag
    n_unreadable: int
    seconds: float


def build_bag(
    dataset: SlideTiles,
    unet: nn.Module,
    rowcol: np.ndarray,
    *,
    batch_size: int,
    workers: int,
    device: torch.device,
) -> BagRun:
    """Read, normalise and run the U-net over every tile of ``dataset`` (workers read).

    Unreadable tiles are left out of the bag (counted).

    Raises:
        SlideError: the slide cannot be opened, or no tile could be read.
    """
    n = len(dataset)
    px = dataset.plan.tile_px
    tiles = np.zeros((n, px, px, 3), np.uint8)
    heat = np.zeros((n, px, px), np.uint8)
    ok = np.zeros(n, bool)

    def consume(batch: SlideBatch, logits: torch.Tensor) -> None:
        idx = batch[1].numpy()
        tiles[idx] = batch[0].numpy()
        heat[idx] = heat_from_logits(logits).numpy()
        ok[idx] = batch[2].numpy().astype(bool)

    seconds = run_on_slide_tiles(
        unet, dataset, consume, batch_size=batch_size, workers=workers, device=device
    )
    if not ok.any():
        raise SlideError(
            f"slide '{dataset.slide_id}'",
            "none of its bag's tiles could be read",
            "re-copy the slide file (it is probably damaged) or remove the slide",
        )
    xy = dataset.xy
    bag = Bag(tiles[ok], heat[ok], rowcol[ok, 0], rowcol[ok, 1], xy[ok, 0], xy[ok, 1])
    return BagRun(bag, int((~ok).sum()), seconds)


def bag_input(
    tiles: torch.Tensor | np.ndarray,
    heat: torch.Tensor | np.ndarray,
    device: torch.device | str = "cpu",
    mean: Sequence[float] = (*IMAGENET_MEAN, HEAT_MEAN),
    std: Sequence[float] = (*IMAGENET_STD, HEAT_STD),
) -> torch.Tensor:
    """uint8 tiles (N x H x W x 3) + heat maps (N x H x W) -> float N x 4 x H x W on ``device``."""
    device = torch.device(device)
    t = torch.as_tensor(tiles).to(device, non_blocking=True)
    h = torch.as_tensor(heat).to(device, non_blocking=True)
    x = torch.empty((h.shape[0], 4, *h.shape[1:]), dtype=torch.float32, device=device)
    x[:, :3].copy_(t.permute(0, 3, 1, 2))  # one strided pass, then in place:
    x[:, 3].copy_(h)
    m = torch.tensor(mean, device=device, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=device, dtype=x.dtype).view(1, -1, 1, 1)
    return x.mul_(1.0 / (255.0 * s)).sub_(m / s)  # (x / 255 - mean) / std


def montage_indices(n: int, k: int) -> list[int]:
    """Up to ``k`` evenly spaced indices of ``n`` (QC montage)."""
    return sorted(set(np.linspace(0, n - 1, num=min(k, n)).round().astype(int).tolist()))
