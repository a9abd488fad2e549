"""Model definitions, losses and checkpoints.

* :mod:`.weights`: offline initial weights (ImageNet from the torch hub cache, a file, none).
* :mod:`.tissue`: the CRLM tissue classifier (ResNet + MLP head, frozen up to ``layer4``).
* :mod:`.unet`: the nuclei U-net and its Dice loss.
* :mod:`.mil`: the HCC MobileNetV2 MIL model, signed generalised mean and Eq. 3-4 loss.
* :mod:`.checkpoint`: save/load with metadata and checks.
"""

from histoprog.io import file_sha256
from histoprog.models.checkpoint import architecture_of, load_checkpoint, save_checkpoint
from histoprog.models.mil import (
    MilLoss,
    build_mil_mobilenet,
    mil_good_probability,
    signed_generalised_mean,
    slide_score,
)
from histoprog.models.tissue import (
    TissueClassifier,
    build_tissue_classifier,
    reinit_head,
    train_mode,
)
from histoprog.models.unet import DiceLoss, build_unet, dice_coefficient
from histoprog.models.weights import resolve_weights

__all__ = [
    "DiceLoss",
    "MilLoss",
    "TissueClassifier",
    "architecture_of",
    "build_mil_mobilenet",
    "build_tissue_classifier",
    "build_unet",
    "dice_coefficient",
    "file_sha256",
    "load_checkpoint",
    "mil_good_probability",
    "reinit_head",
    "resolve_weights",
    "save_checkpoint",
    "signed_generalised_mean",
    "slide_score",
    "train_mode",
]
