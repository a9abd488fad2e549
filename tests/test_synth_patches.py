"""Patch folders (ImageFolder layout) and nucleus image/mask pairs."""

import argparse

import numpy as np
import pytest
from PIL import Image

from histoprog.commands import synth as synth_cmd
from histoprog.errors import InputError
from histoprog.synth.nuclei_pairs import render_nuclei_pair
from histoprog.synth.patches import CLASS_SETS, write_patches


def run_cli(*argv):
    parser = argparse.ArgumentParser()
    synth_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["synth", *map(str, argv)])
    args.func(args)


@pytest.mark.parametrize("class_set,n,size", [("crc", 9, 224), ("crlm", 7, 96)])
def test_patch_folders(tmp_path, class_set, n, size):
    run_cli(
        "patches",
        "--out",
        tmp_path / "p",
        "--set",
        class_set,
        "--n-per-class",
        3,
        "--seed",
        1,
        "--size",
        size,
    )
    folders = sorted(p.name for p in (tmp_path / "p").iterdir())
    assert folders == sorted(CLASS_SETS[class_set]) and len(folders) == n
    for f in folders:
        files = sorted((tmp_path / "p" / f).glob("*.png"))
        assert len(files) == 3
        img = Image.open(files[0])
        assert img.size == (size, size) and img.mode == "RGB"


def test_patches_are_deterministic_and_distinct(tmp_path):
    a = write_patches(tmp_path / "a", class_set="crlm", n_per_class=2, seed=4, size=64)
    write_patches(tmp_path / "b", class_set="crlm", n_per_class=2, seed=4, size=64)
    assert a == dict.fromkeys(CLASS_SETS["crlm"], 2)
    for cls in CLASS_SETS["crlm"]:
        fa = (tmp_path / "a" / cls / f"{cls}_00000.png").read_bytes()
        assert fa == (tmp_path / "b" / cls / f"{cls}_00000.png").read_bytes()
    red = {
        cls: np.asarray(Image.open(tmp_path / "a" / cls / f"{cls}_00000.png"))[..., 0].mean()
        for cls in CLASS_SETS["crlm"]
    }
    assert red["BACK"] > 225 and red["LYM"] < red["HEP"]  # hematoxylin absorbs red
    with pytest.raises(InputError, match="class set"):
        write_patches(tmp_path / "c", class_set="lung")
    with pytest.raises(InputError, match="n_per_class"):
        write_patches(tmp_path / "c", n_per_class=0)


def test_nuclei_pairs_layout(tmp_path):
    run_cli("nuclei", "--out", tmp_path / "n", "--n-images", 2, "--size", 160, "--seed", 2)
    images = sorted(p.name for p in (tmp_path / "n" / "images").iterdir())
    masks = sorted(p.name for p in (tmp_path / "n" / "masks").iterdir())
    assert images == masks == ["synth_0000.png", "synth_0001.png"]
    for name in images:
        img = np.asarray(Image.open(tmp_path / "n" / "images" / name))
        mask = np.asarray(Image.open(tmp_path / "n" / "masks" / name))
        assert img.shape == (160, 160, 3) and mask.shape == (160, 160)
        assert set(np.unique(mask)) <= {0, 255}
        assert 0.02 < (mask > 127).mean() < 0.8
    with pytest.raises(InputError, match="n_images"):
        run_cli("nuclei", "--out", tmp_path / "x", "--n-images", 0)


def test_nuclei_mask_matches_dark_pixels():
    img, mask = render_nuclei_pair((200, 200), 0.25, seed=3, index=0, stain_jitter=0.0)
    grey = img.astype(float).mean(-1)
    assert grey[mask].mean() < grey[~mask].mean() - 30
