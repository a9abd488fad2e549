"""Patch folders, the stratified split, augmentation, model input and stain-target checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from histoprog.data import (
    Augment,
    PatchFolder,
    UnreadableImageError,
    check_stain_target,
    load_patch,
    scan_image_folder,
    stratified_split,
    to_model_input,
)
from histoprog.errors import InputError
from histoprog.stain import TORCHSTAIN_BACKGROUND_INTENSITY, MacenkoNormalizer

torch.set_num_threads(1)

CLASSES7 = ("BACK", "DEB", "HEP", "LYM", "MUC", "STR", "TUM")

# H and E optical-density vectors (torchstain's reference), for H&E-like test patches
_HE = np.array([[0.5626, 0.7201, 0.4062], [0.2159, 0.8012, 0.5581]])


def make_patch_folder(
    root: Path, classes: tuple[str, ...] = CLASSES7, n: int = 12, px: int = 32, seed: int = 0
) -> Path:
    """One folder per class of PNG patches: a class colour plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 220, size=(len(classes), 3))
    for i, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(n):
            image = base[i] + rng.normal(0, 25, size=(px, px, 3))
            Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / f"p{j:03d}.png")
    return root


def he_patch(px: int = 32, seed: int = 0) -> np.ndarray:
    """An H&E-like RGB patch: random H and E concentrations through the stain vectors."""
    rng = np.random.default_rng(seed)
    conc = rng.gamma(2.0, 0.4, size=(px * px, 2))
    od = conc @ (_HE * [[1.2, 0.9, 1.0], [0.8, 1.1, 1.0]])
    rgb = 240 * np.exp(-od)
    return np.clip(rgb, 0, 255).astype(np.uint8).reshape(px, px, 3)


def test_scan_lists_classes_in_the_order_given(tmp_path: Path) -> None:
    make_patch_folder(tmp_path, ("B", "A"), n=3)
    names, samples = scan_image_folder(tmp_path, ["B", "A"])
    assert names == ["B", "A"]
    assert [label for _, label in samples] == [0, 0, 0, 1, 1, 1]
    assert samples[0][0].parent.name == "B"
    assert scan_image_folder(tmp_path)[0] == ["A", "B"]


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        (["A", "B", "C"], r"no folder for class\(es\) \['C'\]"),
        (["A"], r"folder\(s\) \['B'\] that are not classes"),
    ],
)
def test_scan_refuses_missing_or_extra_class_folders(
    tmp_path: Path, classes: list[str], message: str
) -> None:
    make_patch_folder(tmp_path, ("A", "B"), n=2)
    with pytest.raises(InputError, match=message):
        scan_image_folder(tmp_path, classes)


def test_scan_refuses_an_empty_class_folder(tmp_path: Path) -> None:
    make_patch_folder(tmp_path, ("A",), n=2)
    (tmp_path / "B").mkdir()
    (tmp_path / "B" / "notes.txt").write_text("no images here")
    with pytest.raises(InputError, match=r"class folder '.*B': holds no image"):
        scan_image_folder(tmp_path, ["A", "B"])


def test_scan_refuses_a_missing_root(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist.*ImageFolder layout"):
        scan_image_folder(tmp_path / "nowhere")


def test_undecodable_image_is_named(tmp_path: Path) -> None:
    make_patch_folder(tmp_path, ("A", "B"), n=2)
    bad = tmp_path / "B" / "zz_truncated.png"
    bad.write_bytes((tmp_path / "B" / "p000.png").read_bytes()[:40])
    with pytest.raises(UnreadableImageError, match=r"zz_truncated.png': cannot be decoded"):
        load_patch(bad)
    dataset = PatchFolder(tmp_path, stain="none")
    with pytest.raises(UnreadableImageError, match="zz_truncated.png"):
        dataset[len(dataset) - 1]


def test_undecodable_image_keeps_its_type_across_loader_workers(tmp_path: Path) -> None:
    make_patch_folder(tmp_path, ("A", "B"), n=1)
    (tmp_path / "B" / "p000.png").write_bytes(b"not an image at all")
    loader = DataLoader(PatchFolder(tmp_path, stain="none"), batch_size=2, num_workers=1)
    with pytest.raises(UnreadableImageError) as info:
        next(iter(loader))
    assert str(info.value).startswith("patch '")
    assert "p000.png': cannot be decoded" in str(info.value)
    assert "Fix: replace or delete the file" in str(info.value)


def test_split_is_stratified_and_reproducible() -> None:
    labels = np.repeat(np.arange(4), [50, 20, 10, 5])
    train, val = stratified_split(labels, 0.2, seed=3)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(len(labels)))
    assert not set(train) & set(val)
    assert np.bincount(labels[val]).tolist() == [10, 4, 2, 1]
    again_train, again_val = stratified_split(labels, 0.2, seed=3)
    assert np.array_equal(train, again_train) and np.array_equal(val, again_val)
    _, other_val = stratified_split(labels, 0.2, seed=4)
    assert not np.array_equal(val, other_val)


def test_split_keeps_one_sample_per_side_for_small_classes() -> None:
    labels = np.array([0, 0, 1, 1, 1])
    train, val = stratified_split(labels, 0.9, seed=0)
    assert np.bincount(labels[train]).tolist() == [1, 1]
    assert np.bincount(labels[val]).tolist() == [1, 2]


@pytest.mark.parametrize(
    ("labels", "fraction", "message"),
    [([0, 0, 1], 0.2, "has 1 patch"), ([0, 0, 1, 1], 1.0, "validation fraction")],
)
def test_split_errors(labels: list[int], fraction: float, message: str) -> None:
    with pytest.raises(InputError, match=message):
        stratified_split(labels, fraction, seed=0)


def test_augment_gives_a_dihedral_transform() -> None:
    tile = torch.arange(4 * 4 * 3, dtype=torch.uint8).reshape(4, 4, 3)
    group = []
    for k in range(4):
        rotated = torch.rot90(tile, k, dims=(0, 1))
        group += [rotated, rotated.flip(1)]
    torch.manual_seed(0)
    seen = set()
    for _ in range(200):
        out = Augment()(tile)
        assert out.shape == tile.shape
        matches = [i for i, g in enumerate(group) if torch.equal(out, g)]
        assert matches
        seen.add(matches[0])
    assert len(seen) == 8


def test_patch_folder_macenko_per_patch(tmp_path: Path) -> None:
    (tmp_path / "TUM").mkdir()
    (tmp_path / "BACK").mkdir()
    tissue = he_patch()
    Image.fromarray(tissue).save(tmp_path / "TUM" / "a.png")
    blank = np.full((32, 32, 3), 245, dtype=np.uint8)
    Image.fromarray(blank).save(tmp_path / "BACK" / "a.png")
    dataset = PatchFolder(tmp_path, ["BACK", "TUM"], stain="tile")
    out_blank, label_blank = dataset[0]
    out_tissue, label_tissue = dataset[1]
    assert (label_blank, label_tissue) == (0, 1)
    assert torch.equal(out_blank, torch.from_numpy(blank))  # failed fit: unchanged
    assert out_tissue.dtype == torch.uint8 and out_tissue.shape == (32, 32, 3)
    reference = MacenkoNormalizer(None, TORCHSTAIN_BACKGROUND_INTENSITY)
    expected, ok = reference.transform_per_tile(tissue)
    assert ok and torch.equal(out_tissue, torch.from_numpy(expected))
    assert not torch.equal(out_tissue, torch.from_numpy(tissue))


def test_patch_folder_resizes_to_tile_px(tmp_path: Path) -> None:
    make_patch_folder(tmp_path, ("A", "B"), n=1, px=20)
    tile, _ = PatchFolder(tmp_path, stain="none", tile_px=16)[0]
    assert tile.shape == (16, 16, 3)


def test_patch_folder_refuses_unknown_stain_mode(tmp_path: Path) -> None:
    make_patch_folder(tmp_path, ("A", "B"), n=1)
    with pytest.raises(InputError, match="use one of"):
        PatchFolder(tmp_path, stain="vahadane")


def test_to_model_input_standardises_channels_first() -> None:
    batch = torch.full((2, 4, 5, 3), 255, dtype=torch.uint8)
    x = to_model_input(batch, "cpu", mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 1.0))
    assert x.shape == (2, 3, 4, 5) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0], torch.tensor(1.0))
    assert torch.allclose(x[:, 1], torch.tensor(2.0))
    assert torch.allclose(x[:, 2], torch.tensor(0.5))


def test_stain_target_check() -> None:
    target = MacenkoNormalizer(None, TORCHSTAIN_BACKGROUND_INTENSITY).target.to_dict()
    trained = {"stain": "macenko", "stain_target": target}
    check_stain_target(trained, target, "model m")
    check_stain_target({"stain": "none"}, None, "model m")
    with pytest.raises(InputError, match="model m: was trained on Macenko-normalised"):
        check_stain_target(trained, None, "model m")
    other = dict(target, stain_matrix=[[0.6, 0.7, 0.3], [0.2, 0.8, 0.5]])
    with pytest.raises(InputError, match="another Macenko target"):
        check_stain_target(trained, other, "model m")
