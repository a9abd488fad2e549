"""Training loops.

* :mod:`.tissue`: the CRLM tissue classifier (METHODS 3.3-3.4): seeded stratified split, SGD on
  ``layer4`` + head, best-validation-loss checkpoint, early stopping.
"""

from histoprog.train.tissue import (
    LR_SCHEDULES,
    TrainConfig,
    TrainResult,
    fit_classifier,
    normalisation_record,
    save_tissue_checkpoint,
    train_tissue_classifier,
)

__all__ = [
    "LR_SCHEDULES",
    "TrainConfig",
    "TrainResult",
    "fit_classifier",
    "normalisation_record",
    "save_tissue_checkpoint",
    "train_tissue_classifier",
]
