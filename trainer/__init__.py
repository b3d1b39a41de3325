"""scratchnet's trainer: the article's single-layer network, trained in numpy.

from trainer import load_dataset, train, RECIPES, save_artifact
result = train(load_dataset(None), RECIPES["article"])
save_artifact("artifacts/model.npz", result.artifact)
"""

from __future__ import annotations

# First: Ctrl-C while the imports below run is one line, not a traceback (scratchnet.starting).
import scratchnet.starting  # noqa: F401

# isort: split

from scratchnet.artifact import Artifact, load_artifact, save_artifact
from scratchnet.contract import DEFAULT_ARTIFACT, INPUT_SCALE
from scratchnet.datasets import Dataset, load_dataset
from scratchnet.errors import ArtifactError, DataError, ScratchnetError
from scratchnet.forward import predict, probabilities, scale_pixels, scores
from trainer.recipes import RECIPES, Hyperparameters
from trainer.training import TrainingResult, accuracy, train

__all__ = [
    "DEFAULT_ARTIFACT",
    "INPUT_SCALE",
    "RECIPES",
    "Artifact",
    "ArtifactError",
    "DataError",
    "Dataset",
    "Hyperparameters",
    "ScratchnetError",
    "TrainingResult",
    "accuracy",
    "load_artifact",
    "load_dataset",
    "predict",
    "probabilities",
    "save_artifact",
    "scale_pixels",
    "scores",
    "train",
]
