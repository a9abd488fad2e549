"""Nucleus image/mask pairs for U-net training (METHODS 6.1).

Layout (MoNuSeg-style)::

    <root>/images/<name>.<png|jpg|tif>   RGB tissue image (e.g. 1000 x 1000 px at 0.25 mpp)
    <root>/masks/<name>.<png|jpg|tif>    binary mask, same size; pixel > 127 = nucleus

An image and its mask share the file stem. Training uses random square crops taken at the
scale of the HCC tiles the U-net later sees (``target_mpp``, e.g. 512 px at 0.25 mpp
resized to 224 px = 0.571 mpp): a window of ``crop * target_mpp / image_mpp`` image pixels
is resized to ``crop`` pixels, then flipped and rotated by a multiple of 90 degrees, and
optionally its stain perturbed in HED space (``stain_sigma``, as the tissue classifier's
:class:`~histoprog.scanner_jitter.ScannerJitter`).
Validation uses a fixed grid of non-overlapping windows over the held-out images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance, UnidentifiedImageError
from torch.utils.data import Dataset

from histoprog.data import IMAGE_SUFFIXES
from histoprog.errors import InputError
from histoprog.scanner_jitter import jitter_hed

LAYOUT_FIX = (
    "give a folder with images/ and masks/ sub-folders holding pairs with the same file "
    "stem (masks: pixel > 127 = nucleus), e.g. from `histoprog synth nuclei`"
)


@dataclass(frozen=True)
class NucleiPair:
    """One image and its mask as arrays: RGB uint8 (H x W x 3) and bool (H x W)."""

    name: str
    image: np.ndarray
    mask: np.ndarray


def _files(folder: Path) -> dict[str, Path]:
    return {
        p.stem: p
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    }


def _read(path: Path, mode: str) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.array(image.convert(mode))
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise InputError(
            f"nuclei file '{path}'",
            f"cannot be read as an image ({type(err).__name__}: {err})",
            "replace or delete the pair",
        ) from err


def load_nuclei_pairs(root: str | os.PathLike[str]) -> list[NucleiPair]:
    """Read every image/mask pair of a nuclei folder, checking the layout and sizes.

    Raises:
        InputError: a missing folder, no pairs, an image without a mask (or the reverse),
            an unreadable file, or a mask whose size differs from its image's.
    """
    root = Path(root)
    images_dir, masks_dir = root / "images", root / "masks"
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise InputError(f"nuclei folder '{root}'", "has no images/ and masks/ folders", LAYOUT_FIX)
    images, masks = _files(images_dir), _files(masks_dir)
    unpaired = sorted(set(images) ^ set(masks))
    if unpaired:
        raise InputError(
            f"nuclei folder '{root}'",
            f"file(s) without a partner in the other folder: {unpaired[:5]}",
            LAYOUT_FIX,
        )
    if not images:
        raise InputError(f"nuclei folder '{root}'", "holds no image/mask pairs", LAYOUT_FIX)
    pairs = []
    for name in sorted(images):
        image = _read(images[name], "RGB")
        mask = _read(masks[name], "L") > 127
        if image.shape[:2] != mask.shape:
            raise InputError(
                f"nuclei pair '{name}' ({images[name]}, {masks[name]})",
                f"the image is {image.shape[1]} x {image.shape[0]} px but the mask is "
                f"{mask.shape[1]} x {mask.shape[0]} px",
                "give every mask the size of its image (same pixel grid)",
            )
        pairs.append(NucleiPair(name, image, mask))
    return pairs


def split_pairs(
    pairs: list[NucleiPair], val_fraction: float, seed: int
) -> tuple[list[NucleiPair], list[NucleiPair]]:
    """Seeded split by image: ``round(val_fraction * n)`` held out (at least 1, at most n-1).

    Raises:
        InputError: fewer than 2 pairs or a fraction outside (0, 1).
    """
    if not 0 < val_fraction < 1:
        raise InputError("U-net validation fraction", f"is {val_fraction}", "use e.g. 0.25")
    if len(pairs) < 2:
        raise InputError(
            "nuclei pairs",
            f"only {len(pairs)} pair(s); a train/validation split needs at least 2",
            "add image/mask pairs",
        )
    n_val = min(len(pairs) - 1, max(1, round(val_fraction * len(pairs))))
    order = np.random.default_rng(seed).permutation(len(pairs))
    val = sorted(order[:n_val].tolist())
    return [p for i, p in enumerate(pairs) if i not in val], [pairs[i] for i in val]


def window_px(crop: int, image_mpp: float, target_mpp: float) -> int:
    """Image pixels of a crop window that becomes ``crop`` pixels at ``target_mpp``."""
    if image_mpp <= 0 or target_mpp <= 0 or crop < 1:
        raise InputError(
            "U-net crop scale",
            f"crop={crop}, image_mpp={image_mpp}, target_mpp={target_mpp}",
            "use a positive crop and resolutions",
        )
    return max(1, round(crop * target_mpp / image_mpp))


def resize_pair(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize an image (antialiased) and its mask (area share > 0.5) to ``size`` square."""
    if image.shape[:2] == (size, size):
        return image, mask
    img = np.array(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))
    share = Image.fromarray(mask.astype(np.float32)).resize((size, size), Image.Resampling.BILINEAR)
    return img, np.asarray(share) > 0.5


def _dihedral(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple:
    k = int(rng.integers(4))
    if rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    return np.rot90(image, k), np.rot90(mask, k)


def jitter_stain(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Scale the H and E amounts by U(1 - s, 1 + s) and shift them by U(-s, s) * 0.1 OD."""
    scale = np.append(1 + sigma * rng.uniform(-1, 1, 2), 1.0)
    shift = np.append(0.1 * sigma * rng.uniform(-1, 1, 2), 0.0)
    return jitter_hed(np.ascontiguousarray(image), scale, shift)


def jitter_colour(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast and saturation factors U(1 - c, 1 + c); hue shift U(-c, c) / 20.

    The hue shift is a share of the hue circle (``c = 1``: up to 18 degrees).
    """
    out = Image.fromarray(np.ascontiguousarray(image))
    for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        out = enhance(out).enhance(1 + strength * rng.uniform(-1, 1))
    shift = round(255 * strength * rng.uniform(-1, 1) / 20)
    if shift == 0:  # skip the lossy HSV round trip
        return np.array(out)
    hsv = np.array(out.convert("HSV"))
    hsv[..., 0] = (hsv[..., 0].astype(int) + shift) % 256
    return np.array(Image.fromarray(hsv, "HSV").convert("RGB"))


class NucleiCrops(Dataset):
    """Random augmented crops: ``crops_per_image`` per image and epoch.

    Items are ``(uint8 H x W x 3 tensor, float 1 x H x W mask)``. Crop ``i`` of epoch ``e``
    is drawn from ``numpy.random.default_rng((seed, e, i))``, so runs are reproducible
    whatever the DataLoader workers; call :meth:`set_epoch` before each epoch.
    ``stain_sigma`` > 0 adds :func:`jitter_stain` after the flips and rotations, then
    ``colour_jitter`` > 0 :func:`jitter_colour` (0: none).
    """

    def __init__(
        self,
        pairs: list[NucleiPair],
        crop: int,
        window: int,
        crops_per_image: int,
        seed: int,
        stain_sigma: float = 0.0,
        colour_jitter: float = 0.0,
    ) -> None:
        small = [p.name for p in pairs if min(p.mask.shape) < window]
        if small:
            raise InputError(
                f"nuclei image(s) {small[:5]}",
                f"are smaller than the {window} px crop window",
                "use larger images, a smaller hcc.unet.crop, or a coarser image_mpp",
            )
        self.pairs = pairs
        self.crop = crop
        self.window = window
        self.crops_per_image = crops_per_image
        self.seed = seed
        self.stain_sigma = stain_sigma
        self.colour_jitter = colour_jitter
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the random stream of an epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs) * self.crops_per_image

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.epoch, index))
        pair = self.pairs[index // self.crops_per_image]
        h, w = pair.mask.shape
        y, x = int(rng.integers(h - self.window + 1)), int(rng.integers(w - self.window + 1))
        win = (slice(y, y + self.window), slice(x, x + self.window))
        image, mask = resize_pair(pair.image[win], pair.mask[win], self.crop)
        image, mask = _dihedral(image, mask, rng)
        if self.stain_sigma > 0:
            image = jitter_stain(image, self.stain_sigma, rng)
        if self.colour_jitter > 0:
            image = jitter_colour(image, self.colour_jitter, rng)
        return (
            torch.from_numpy(np.ascontiguousarray(image)),
            torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None],
        )


def grid_crops(
    pairs: list[NucleiPair], crop: int, window: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping windows over every image, resized.

    Returns:
        ``(uint8 N x H x W x 3 images, float N x 1 x H x W masks)``.
    """
    images, masks = [], []
    for pair in pairs:
        h, w = pair.mask.shape
        for y in range(0, h - window + 1, window):
            for x in range(0, w - window + 1, window):
                win = (slice(y, y + window), slice(x, x + window))
                image, mask = resize_pair(pair.image[win], pair.mask[win], crop)
                images.append(image)
                masks.append(mask)
    if not images:
        raise InputError(
            "validation nuclei images",
            f"are smaller than the {window} px crop window",
            "use larger images or a smaller hcc.unet.crop",
        )
    return (
        torch.from_numpy(np.stack(images)),
        torch.from_numpy(np.stack(masks).astype(np.float32))[:, None],
    )
