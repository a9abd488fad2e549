"""Nuclei U-net (METHODS 6.1) on the real MoNuSeg pairs: held-out pixel Dice.

Data: ``../shared/data/nuclei`` (``images/`` and ``masks/`` with the same stems; 8 MoNuSeg
images of 1000 x 1000 px at 40x, 0.25 um/px; mask > 127 = nucleus); the benchmark stops
with a message when the folder is absent.

How:

1. split: ``--held-out`` of the images (seeded by ``--split-seed``) are held out; they are
   never seen in training, not even for choosing the kept epoch. The others are linked into
   ``<work>/train`` and ``histoprog train_unet`` (its CLI and its code, as the workflow runs
   it) trains on them with the schema defaults (the workflow's ``hcc.unet``), except
   ``--weights none``: no ImageNet weights can be downloaded here, so the encoder starts
   from random weights. Options after ``--`` go to ``train_unet`` (e.g. ``-- --epochs 20
   --encoder resnet18``). ``train_unet`` carves its own validation images out of the
   training images (``--val-fraction``) and keeps the epoch with the best validation Dice.
2. held-out Dice: every held-out image is predicted tile-wise as the ``nuclei`` stage does:
   windows of 512 px at 0.25 mpp (``tile.hcc``) resized (Lanczos) to 224 px
   (``hcc.mil.tile_px_in``), i.e. 0.571 um/px, the U-net's sigmoid heat map (uint8,
   :func:`histoprog.hcc.unet.heat_maps`); the windows cover the whole image (the last
   row/column of windows is shifted to the image's edge, overlaps averaged), each heat map
   is resized back to the window (bilinear) and thresholded at p >= 0.5. The Dice of the
   nucleus class is pooled over every pixel of the held-out images at their native
   resolution (``2 |P & T| / (|P| + |T|)``); per-image Dice beside it. No Vahadane
   normalisation (the U-net is trained on the images as they are). A U-net trained at
   another scale (``-- --target-mpp X``, a diagnostic: the workflow's is fixed) is applied
   at its own: 224-px tiles at X um/px.
3. prints the settings (the checkpoint's), the per-epoch history, the kept epoch, the
   Dice, the training and evaluation wall time and the load average before and after.

Target (issue 16): held-out Dice >= 0.82 (the paper's).

Result: the target is not met. Best held-out Dice 0.768 (split seed 0) and 0.748 (split
seed 1) with the workflow's settings plus stain and colour jitter, from random init (no
ImageNet weights here)::

    python benchmarks/bench_unet_monuseg.py [--split-seed 1] \\
        -- --stain-sigma 0.9 --colour-jitter 0.3

resnet34, 40 epochs, crop 224 (512 px at 0.25 um/px resized), 16 crops per image, batch
8, Adam lr 1e-3 constant, Dice loss, 4 training + 2 validation images (train_unet's
val_fraction 0.25 of the 6): split 0 kept epoch 40 (validation Dice 0.776), held-out 0.768
(TCGA-44-2665 0.790, TCGA-A6-6782 0.735), training 10.5 min, load 2.7 -> 3.0; split 1
kept epoch 19 (0.788), held-out 0.748 (TCGA-18-5592 0.739, TCGA-AC-A2FO 0.759), 10.4
min, load 3.0 -> 3.1. With ``--stain-sigma 0.6`` (split 0): kept epoch 29 (0.786),
held-out 0.757 (0.757, 0.758), 12.1 min, load 7.4 -> 3.2. Without jitter (20 epochs):
0.636. Held-out prediction: under 1 s for the two images.

Measured (this 2-core machine shared with another agent's jobs, 1 torch thread; split
seed 0 holds out TCGA-44-2665-01B-06-BS6 and TCGA-A6-6782-01A-01-BS1; train_unet's own
validation images TCGA-69-7764-01A-01-TS1 and TCGA-AC-A2FO-01A-01-TS1, 4 training images):

* the schema defaults (resnet34, crop 224, 16 crops per image, batch 8, Adam lr 1e-3, Dice
  loss, flips/rot90 only) from random init, 20 epochs (``-- --epochs 20``): kept epoch 18
  (validation Dice 0.557), held-out Dice 0.636 (0.735, 0.387); training 6.5 min, load
  2.3 -> 5.3. Training Dice loss 0.17 vs validation 0.45-0.55: the images differ in stain.
* short runs to find settings: resnet18, crop 128 (73 um), 32 crops per image, batch 8,
  lr 1e-3, 20 epochs (2.9-4.2 min each, load 1-7), held-out Dice (kept epoch): no jitter
  0.609 (19); ``--stain-sigma 0.3`` 0.686 (3); 0.3 with ``--loss dice_bce`` 0.628 (10);
  0.3 with ``--lr-schedule cosine`` 0.673 (3); 0.6 0.729 (2); 0.9 0.729 (7); 0.6 with
  ``--val-fraction 0.17`` (5 training images, 1 validation) 0.752 (18); 0.6 with lr 3e-4
  0.677 (13). Stain jitter is what generalises to the held-out stains; 20 epochs of 16-20
  steps underfit: the model of ``--stain-sigma 0.6`` gave only 0.74-0.84 Dice on its own
  training images (missed pale vesicular nuclei, dark cytoplasm taken for nuclei).
* 80 epochs of the 0.752 settings with ``--lr-schedule cosine`` (14.2 min, load 2.0 ->
  5.9): validation Dice flat at 0.75-0.77 from epoch 7 on, kept epoch 18 (0.771),
  held-out 0.753 (0.742, 0.769): more steps do not help; its Dice on the 5 training
  images is only 0.79-0.86.
* from the 0.752 settings (5 training images, stain 0.6, 20 epochs), one change each
  (load 4-9): ``--colour-jitter 0.3`` 0.764; lr 3e-3 0.733; ``--loss dice_bce`` 0.719;
  resnet34 0.726; crop 224 with 10 crops per image (the same pixels) 0.759.
* stain 0.6 + colour 0.3, 40 epochs with ``--lr-schedule cosine`` (7.4 min, load 6-7):
  validation 0.75-0.77 from epoch 4 on, kept epoch 32, held-out 0.734: run-to-run
  spread is about +-0.02, so the one-change differences above are mostly noise; stain
  (and colour) jitter is the one change that clearly helps (0.61-0.64 -> 0.73-0.76).
* diagnostic, the native scale (``--target-mpp 0.25 --crop 192``, tiles of 224 px at
  0.25 um/px; not what the pipeline runs), 5 training images, stain 0.6 + colour 0.3:
  held-out 0.631 (7.4 min) vs 0.764 at the pipeline's scale: the 0.571 um/px scale is
  not what limits the Dice.
* another split (``--split-seed 1``: TCGA-18-5592-01Z-00-DX1 and TCGA-AC-A2FO-01A-01-TS1
  held out), resnet18, crop 128, stain 0.6 + colour 0.3, 20 epochs: 0.589 (0.529, 0.670);
  TCGA-18-5592's stain is the outlier of the eight (about a third of the others'
  haematoxylin in its nuclei). With ``--stain-sigma 0.9``: 0.743 (0.721, 0.771).
* why 0.82 is out of reach here: 4-5 training images, random init, and masks that leave
  some clear nuclei unannotated (seen on TCGA-CU-A0YN); the models reach only 0.79-0.86
  Dice on their own training images.

    python benchmarks/bench_unet_monuseg.py [--nuclei ../shared/data/nuclei] [--held-out 2]
        [--split-seed 0] [--threads 1] [--work benchmarks/out/unet_monuseg] [-- TRAIN_UNET_OPTIONS]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from histoprog.cli import build_parser
from histoprog.defaults import default
from histoprog.hcc.nuclei_data import NucleiPair, load_nuclei_pairs, window_px
from histoprog.hcc.unet import heat_maps
from histoprog.models import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
NUCLEI = ROOT.parent / "shared" / "data" / "nuclei"
#: the nuclei stage's tile side: tile.hcc.px at tile.hcc.mpp resized to this (224 px at
#: train_unet's default --target-mpp, 0.571)
TILE_PX_IN = default("hcc.mil.tile_px_in")


def split(names: list[str], held_out: int, seed: int) -> tuple[list[str], list[str]]:
    """Seeded split of the sorted image names: (training, held out)."""
    order = np.random.default_rng(seed).permutation(len(names))
    out = sorted(names[i] for i in order[:held_out])
    return [n for n in names if n not in out], out


def link_pairs(root: Path, names: list[str], work: Path) -> Path:
    """``work/train/{images,masks}`` holding links to the named pairs (fresh each run)."""
    train = work / "train"
    for sub in ("images", "masks"):
        folder = train / sub
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        for path in sorted((root / sub).iterdir()):
            if path.stem in names:
                (folder / path.name).symlink_to(path.resolve())
    return train


def train(train_dir: Path, work: Path, threads: int, extra: list[str]) -> Path:
    """Run ``histoprog train_unet`` in this process (its CLI parser, its run())."""
    argv = ["train_unet", "--nuclei", str(train_dir), "--weights", "none",
            "--threads", str(threads), "--device", "cpu",
            "--out-model", str(work / "unet.pt"), "--out-history", str(work / "history.tsv"),
            "--out-curve", str(work / "curve.png"), *extra]  # fmt: skip
    args = build_parser("train_unet").parse_args(argv)
    args.func(args)
    return work / "unet.pt"


def starts(size: int, window: int) -> list[int]:
    """Window corners covering ``size`` px: a grid, the last one flush with the edge."""
    grid = list(range(0, size - window + 1, window))
    return grid if grid[-1] + window == size else [*grid, size - window]


def predict(model: torch.nn.Module, image: np.ndarray, window: int) -> np.ndarray:
    """Nucleus probability of every pixel, tile-wise at the nuclei stage's scale."""
    h, w = image.shape[:2]
    corners = [(y, x) for y in starts(h, window) for x in starts(w, window)]
    tiles = np.stack([
        np.array(Image.fromarray(image[y : y + window, x : x + window])
                 .resize((TILE_PX_IN, TILE_PX_IN), Image.Resampling.LANCZOS))
        for y, x in corners
    ])  # fmt: skip
    heat = heat_maps(model, torch.from_numpy(tiles)).numpy()
    total, count = np.zeros((h, w)), np.zeros((h, w))
    for (y, x), tile_heat in zip(corners, heat, strict=True):
        p = Image.fromarray(tile_heat.astype(np.float32) / 255)
        total[y : y + window, x : x + window] += np.asarray(
            p.resize((window, window), Image.Resampling.BILINEAR)
        )
        count[y : y + window, x : x + window] += 1
    return total / count


def held_out_dice(
    model: torch.nn.Module, pairs: list[NucleiPair], image_mpp: float, model_mpp: float
) -> dict:
    """Per-image and pooled Dice of ``p >= 0.5`` vs the masks at native resolution."""
    window = window_px(TILE_PX_IN, image_mpp, model_mpp)
    inter = total = 0
    out = {}
    for pair in pairs:
        pred = predict(model, pair.image, window) >= 0.5
        i, t = int((pred & pair.mask).sum()), int(pred.sum() + pair.mask.sum())
        out[pair.name] = 2 * i / t
        inter, total = inter + i, total + t
    out["pooled"] = 2 * inter / total
    return out


def main() -> None:
    """Split, train, predict the held-out images; print settings, history, Dice, time, load."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="options after -- go to histoprog train_unet",
    )
    parser.add_argument("--nuclei", default=str(NUCLEI), help="images/ and masks/ folder")
    parser.add_argument("--held-out", type=int, default=2, help="images held out")
    parser.add_argument("--split-seed", type=int, default=0, help="held-out split seed")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--work", default="benchmarks/out/unet_monuseg", help="output folder")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    a, extra = parser.parse_args(argv[:cut]), argv[cut + 1 :]
    root = Path(a.nuclei)
    if not (root / "images").is_dir() or not (root / "masks").is_dir():
        sys.exit(f"no MoNuSeg pairs: {root} has no images/ and masks/ folders (give --nuclei)")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(a.threads)
    load_before = os.getloadavg()
    work = Path(a.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    pairs = load_nuclei_pairs(root)
    names, held = split([p.name for p in pairs], a.held_out, a.split_seed)
    print(f"{len(pairs)} pairs; held out (split seed {a.split_seed}): {held}", flush=True)
    started = time.perf_counter()
    model_path = train(link_pairs(root, names, work), work, a.threads, extra)
    train_s = time.perf_counter() - started
    model, meta = load_checkpoint(model_path, expected_kind="unet")
    cfg, metrics = meta["config"], meta["metrics"]
    started = time.perf_counter()
    held_pairs = [p for p in pairs if p.name in held]
    dice = held_out_dice(model, held_pairs, cfg["image_mpp"], cfg["target_mpp"])
    eval_s = time.perf_counter() - started
    load_after = os.getloadavg()
    history = pd.read_csv(work / "history.tsv", sep="\t")
    print("\nsettings: " + ", ".join(f"{k}={v}" for k, v in cfg.items()))
    print(f"init: {metrics['init_source']}; validation images (train_unet's own split of the "
          f"training images): {metrics['val_images']}")  # fmt: skip
    print(history.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    print(f"kept epoch {metrics['best_epoch']} (validation Dice {metrics['val_dice']:.4f})")
    print("held-out Dice: " + ", ".join(f"{k} {v:.4f}" for k, v in dice.items()))
    print(f"target >= 0.82: {'met' if dice['pooled'] >= 0.82 else 'not met'}")
    print(f"time: training {train_s / 60:.1f} min, held-out prediction {eval_s:.1f} s")
    print("load average (1, 5, 15 min): before " + " ".join(f"{x:.2f}" for x in load_before)
          + ", after " + " ".join(f"{x:.2f}" for x in load_after))  # fmt: skip


if __name__ == "__main__":
    main()
