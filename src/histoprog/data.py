"""Datasets and loaders: patch folders for training, slide tiles for inference (METHODS 3).

* :class:`PatchFolder`: an ImageFolder layout (one sub-folder per class) of RGB patches,
  Macenko-normalised per patch (``stain="tile"``, torchstain's per-tile fit as in the paper;
  a patch whose fit fails passes unchanged) or used as they are (``stain="none"``, e.g.
  NCT-CRC-HE-100K, which ships normalised), then optionally flipped and rotated by a
  multiple of 90 degrees; for training, :class:`~histoprog.scanner_jitter.ScannerJitter`
  varies stain, resampling filter and JPEG before normalisation.
* :class:`SlideTiles`: the tissue tiles of one slide, read from its tile table with the
  slide's read plan and normalised with its fitted stain parameters. Each DataLoader worker
  opens the slide itself (:func:`open_worker_slide` as ``worker_init_fn``); a tile that
  fails to read comes back blank with ``ok = False`` instead of stopping the loader.

Both yield ``uint8`` tensors (H x W x 3); :func:`to_model_input` turns a batch into the
model's normalised float input on the model's device, so the host only moves bytes.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openslide
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, get_worker_info

from histoprog.errors import HistoprogError, InputError
from histoprog.scanner_jitter import ScannerJitter
from histoprog.slides import ReadPlan, open_slide, read_tile
from histoprog.stain import (
    TORCHSTAIN_BACKGROUND_INTENSITY,
    MacenkoNormalizer,
    StainNormalizer,
    StainParams,
)

log = logging.getLogger(__name__)

#: file suffixes read as patches (torchvision's ImageFolder list)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

#: ImageNet channel statistics (the backbones' pretraining normalisation)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

STAIN_MODES = ("tile", "none")


class UnreadableImageError(InputError):
    """A patch file that does not decode.

    Keeps its type when a DataLoader worker raises it: PyTorch re-raises a worker's
    exception in the main process as ``type(message)``, so the one-argument form takes that
    text and keeps the original message (its last line).
    """

    def __init__(self, what: str, problem: str | None = None, fix: str | None = None) -> None:
        if problem is None or fix is None:
            last = what.rstrip().splitlines()[-1] if what.strip() else what
            message = last.removeprefix(f"{type(self).__module__}.{type(self).__name__}: ")
            self.what, self.problem, self.fix = message, "", ""
            HistoprogError.__init__(self, message)
        else:
            super().__init__(what, problem, fix)


@dataclass(frozen=True)
class Augment:
    """Random horizontal/vertical flips and 90-degree rotations of an H x W x 3 tensor."""

    flips: bool = True
    rotations: bool = True

    def __call__(self, tile: torch.Tensor) -> torch.Tensor:
        """Apply a random element of the dihedral group (torch's RNG, so workers are seeded)."""
        if self.flips:
            if torch.rand(()) < 0.5:
                tile = tile.flip(1)
            if torch.rand(()) < 0.5:
                tile = tile.flip(0)
        if self.rotations:
            k = int(torch.randint(4, ()))
            if k:
                tile = torch.rot90(tile, k, dims=(0, 1))
        return tile.contiguous()


def scan_image_folder(
    root: str | os.PathLike[str], class_names: Sequence[str] | None = None
) -> tuple[list[str], list[tuple[Path, int]]]:
    """List the patches of an ImageFolder layout, checking the classes.

    Args:
        root: the folder holding one sub-folder per class.
        class_names: the classes expected, in output order; ``None`` = the sub-folders,
            sorted. Every class needs a folder with at least one image, and no other
            sub-folder may be present.

    Returns:
        ``(class_names, samples)``: samples are ``(path, class index)`` sorted by class,
        then file name.

    Raises:
        InputError: a missing root, a missing, extra or empty class folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(
            f"patch folder '{root}'",
            "does not exist" if not root.exists() else "is not a folder",
            "give an ImageFolder layout: one sub-folder per class holding that class's patches",
        )
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    names = list(folders) if class_names is None else [str(c) for c in class_names]
    missing = [c for c in names if c not in folders]
    extra = [f for f in folders if f not in names]
    if missing or extra or len(names) < 2:
        problem = "; ".join(
            part
            for part in (
                f"has no folder for class(es) {missing}" if missing else "",
                f"has folder(s) {extra} that are not classes {names}" if extra else "",
                f"holds {len(names)} class folder(s); a classifier needs at least 2"
                if len(names) < 2
                else "",
            )
            if part
        )
        raise InputError(
            f"patch folder '{root}'",
            problem,
            f"give exactly one sub-folder per class ({names or 'at least two classes'}); move "
            "other folders out of it or fix the class list in the config",
        )
    samples: list[tuple[Path, int]] = []
    for index, name in enumerate(names):
        files = sorted(
            p
            for p in (root / name).iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
        if not files:
            raise InputError(
                f"class folder '{root / name}'",
                f"holds no image ({', '.join(IMAGE_SUFFIXES)})",
                f"put the '{name}' patches there, or drop the class from the class list",
            )
        samples += [(p, index) for p in files]
    return names, samples


def load_patch(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file as RGB ``uint8`` (H x W x 3); raise UnreadableImageError if not."""
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
        raise UnreadableImageError(
            f"patch '{path}'",
            f"cannot be decoded as an image ({type(err).__name__}: {err})",
            "replace or delete the file (it is truncated, corrupt or not an image)",
        ) from err


class PatchFolder(Dataset):
    """Patches of an ImageFolder layout as ``(uint8 H x W x 3 tensor, class index)``.

    Args:
        root: the folder with one sub-folder per class.
        class_names: classes in output order (``None`` = sorted sub-folders); see
            :func:`scan_image_folder`.
        stain: ``"tile"``: Macenko per patch (torchstain's fit on the patch, to the
            normaliser's target); ``"none"``: patches as they are.
        normalizer: the Macenko normaliser (default: torchstain's reference target and
            background intensity).
        augment: augmentation applied after normalisation, or ``None``.
        jitter: scanner-like stain/resampling/JPEG variation applied before normalisation
            (it also picks the resizing filter), or ``None`` (Lanczos resize only).
        tile_px: patches of another size are resized to this (antialiased); ``None`` keeps
            their size (all patches must then be equally sized to batch).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        class_names: Sequence[str] | None = None,
        *,
        stain: str = "tile",
        normalizer: MacenkoNormalizer | None = None,
        augment: Augment | None = None,
        jitter: ScannerJitter | None = None,
        tile_px: int | None = None,
    ) -> None:
        if stain not in STAIN_MODES:
            raise InputError(
                "patch stain normalisation",
                f"is {stain!r}",
                f"use one of {list(STAIN_MODES)}",
            )
        self.root = Path(root)
        self.class_names, self.samples = scan_image_folder(root, class_names)
        self.targets = [label for _, label in self.samples]
        self.stain = stain
        self.normalizer = normalizer or (
            MacenkoNormalizer(None, TORCHSTAIN_BACKGROUND_INTENSITY) if stain == "tile" else None
        )
        self.augment = augment
        self.jitter = jitter
        self.tile_px = tile_px

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        patch = load_patch(path)
        if self.jitter is not None:
            patch = self.jitter(patch, self.tile_px)
        elif self.tile_px is not None and patch.shape[:2] != (self.tile_px, self.tile_px):
            size = (self.tile_px, self.tile_px)
            patch = np.array(Image.fromarray(patch).resize(size, Image.Resampling.LANCZOS))
        if self.normalizer is not None:
            patch, _ = self.normalizer.transform_per_tile(patch)
        tile = torch.from_numpy(np.ascontiguousarray(patch))
        if self.augment is not None:
            tile = self.augment(tile)
        return tile, label

    def with_augment(
        self, augment: Augment | None, jitter: ScannerJitter | None = None
    ) -> PatchFolder:
        """A shallow copy of this dataset with other augmentations (shares the file list)."""
        copy = object.__new__(PatchFolder)
        copy.__dict__.update(self.__dict__)
        copy.augment = augment
        copy.jitter = jitter
        return copy


def stratified_split(
    labels: Sequence[int], val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified train/validation split of sample indices (METHODS 3.3).

    Each class contributes ``round(val_fraction * n_c)`` samples to validation, at least 1
    and at most ``n_c - 1``, drawn with ``numpy.random.default_rng(seed)``; the same labels
    and seed give the same split.

    Returns:
        ``(train_indices, val_indices)``, each sorted.

    Raises:
        InputError: a fraction outside (0, 1), or a class with fewer than 2 samples.
    """
    if not 0 < val_fraction < 1:
        raise InputError(
            "validation fraction", f"is {val_fraction}", "use a value in (0, 1), e.g. 0.2"
        )
    labels_arr = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train: list[np.ndarray] = []
    val: list[np.ndarray] = []
    for label in np.unique(labels_arr):
        idx = np.flatnonzero(labels_arr == label)
        if len(idx) < 2:
            raise InputError(
                f"class index {int(label)}",
                f"has {len(idx)} patch; a train/validation split needs at least 2 per class",
                "add patches of that class",
            )
        n_val = min(len(idx) - 1, max(1, round(val_fraction * len(idx))))
        shuffled = rng.permutation(idx)
        val.append(shuffled[:n_val])
        train.append(shuffled[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def to_model_input(
    batch: torch.Tensor,
    device: torch.device | str = "cpu",
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """uint8 N x H x W x 3 -> float N x 3 x H x W on ``device``, scaled to [0, 1] and standardised.

    The bytes move to the device first (4x less transfer than floats); on CUDA the result is
    channels-last, the fast layout for convolutions there.
    """
    device = torch.device(device)
    x = batch.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
    m, s = _channel_stats(tuple(map(float, mean)), tuple(map(float, std)), device)
    x = (x - m) / s
    if device.type == "cuda":
        return x.contiguous(memory_format=torch.channels_last)
    return x.contiguous()


@functools.lru_cache(maxsize=8)
def _channel_stats(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``mean`` and ``std`` as 1 x 3 x 1 x 1 float tensors on ``device``, made once.

    A new small tensor per batch would be a synchronous copy to a GPU, which waits for
    the work queued before it.
    """
    return tuple(torch.tensor(v, device=device).view(1, 3, 1, 1) for v in (mean, std))


class SlideTiles(Dataset):
    """The tissue tiles of one slide as ``(uint8 tile, index, ok, stain_ok)``.

    Args:
        slide_path: the slide file.
        slide_id: its id (for messages).
        plan: the read plan from the tile stage's ``tiles.json`` (``"read"``).
        xy: level-0 top-left corners, N x 2 (the tile table's ``x``, ``y``).
        normalizer: the stain normaliser (its target is the stain stage's target).
        params: the slide's fitted source parameters (``stain.fit: slide``), or ``None`` to
            fit every tile (``stain.fit: tile``, a :class:`MacenkoNormalizer` only; a tile
            whose fit fails passes unchanged with ``stain_ok = False``).

    A tile that cannot be read comes back white with ``ok = False``. The slide is opened
    lazily in each process (:func:`open_worker_slide` does it when a worker starts) and never
    pickled.
    """

    def __init__(
        self,
        slide_path: str | os.PathLike[str],
        slide_id: str,
        plan: ReadPlan,
        xy: np.ndarray,
        normalizer: StainNormalizer,
        params: StainParams | None,
    ) -> None:
        self.slide_path = os.fspath(slide_path)
        self.slide_id = slide_id
        self.plan = plan
        self.xy = np.asarray(xy, dtype=np.int64).reshape(-1, 2)
        self.normalizer = normalizer
        self.params = params
        self.stain_in_workers = True
        self._slide: openslide.OpenSlide | None = None

    def move_stain_to(self, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """Leave the stain transform to the caller, on ``device``, when it can run there.

        Only with slide-level parameters and a normaliser with a tensor transform
        (:meth:`~histoprog.stain.MacenkoNormalizer.transform_tensor`, bit-identical to the
        workers' numpy one). Then the items' tiles come unnormalised (call before the
        DataLoader starts its workers) and the returned function normalises a batch of
        them on ``device``; otherwise ``None`` and the workers normalise as before.
        """
        transform = getattr(self.normalizer, "transform_tensor", None)
        if self.params is None or transform is None:
            return None
        self.stain_in_workers = False
        params = self.params
        return lambda tiles: transform(tiles.to(device, non_blocking=True), params)

    def open(self) -> None:
        """Open the slide in this process (raises SlideError when it cannot be opened)."""
        if self._slide is None:
            self._slide = open_slide(self.slide_path, self.slide_id)

    def close(self) -> None:
        """Close this process's slide handle."""
        if self._slide is not None:
            self._slide.close()
            self._slide = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_slide"] = None
        return state

    def __len__(self) -> int:
        return len(self.xy)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, bool, bool]:
        self.open()
        x, y = self.xy[index]
        try:
            tile = read_tile(self._slide, self.plan, int(x), int(y))
        except (openslide.OpenSlideError, OSError, ValueError) as err:
            log.warning(
                "slide %s: tile at (%d, %d) could not be read: %s", self.slide_id, x, y, err
            )
            blank = torch.full((self.plan.tile_px, self.plan.tile_px, 3), 255, dtype=torch.uint8)
            return blank, index, False, False
        if not self.stain_in_workers:
            stain_ok = True  # normalised by the caller (move_stain_to)
        elif self.params is not None:
            tile, stain_ok = self.normalizer.transform(tile, self.params), True
        else:
            tile, stain_ok = self.normalizer.transform_per_tile(tile)
        # a writable C-contiguous copy only where needed (a PIL image's array is read-only)
        return torch.from_numpy(np.require(tile, requirements="CW")), index, True, stain_ok


def open_worker_slide(worker_id: int) -> None:
    """``worker_init_fn`` for :class:`SlideTiles` loaders: open the slide in this worker."""
    info = get_worker_info()
    if info is not None and isinstance(info.dataset, SlideTiles):
        info.dataset.open()


def check_stain_target(
    normalisation: Mapping[str, Any], target: Mapping[str, Any] | None, what: str
) -> None:
    """Refuse inputs normalised differently from the model's training patches.

    Args:
        normalisation: the checkpoint's ``normalisation`` record.
        target: the Macenko target (``MacenkoParams.to_dict()``) the inputs are normalised
            to, or ``None`` when they are not normalised.
        what: the model, for the message.

    Raises:
        InputError: the model was trained on Macenko-normalised patches and the inputs are
            not normalised, or normalised to another target.
    """
    if normalisation.get("stain") != "macenko":
        return
    if target is None:
        raise InputError(
            what,
            "was trained on Macenko-normalised patches, but the inputs here are not normalised",
            "normalise the inputs as for training (--stain tile)",
        )
    trained = normalisation.get("stain_target")
    if not same_stain_target(trained, target):
        raise InputError(
            what,
            "was trained on patches normalised to another Macenko target "
            f"(stain matrix {_short(trained)}) than the inputs here ({_short(target)})",
            "use the same stain.target_image, alpha, beta and io as for training, or retrain",
        )


def same_stain_target(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    """Whether two Macenko target records agree (stain matrix, max concentrations, Io)."""
    if a is None or b is None:
        return a is b
    return bool(
        np.allclose(a["stain_matrix"], b["stain_matrix"], atol=1e-6)
        and np.allclose(a["max_conc"], b["max_conc"], atol=1e-6)
        and np.isclose(a["Io"], b["Io"])
    )


def _short(target: Mapping[str, Any] | None) -> str:
    """A target's stain matrix, rounded, for messages."""
    if not target:
        return "none"
    return str(np.round(np.asarray(target["stain_matrix"], dtype=float), 3).tolist())
