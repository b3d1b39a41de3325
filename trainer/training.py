"""A training run: data set and hyperparameters in, an Artifact with its metadata out."""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scratchnet.artifact import Artifact
from scratchnet.contract import CLASS_LABELS, IMAGE_SHAPE, INPUT_SCALE, INPUT_SCALE_KEY, VERSIONS
from scratchnet.datasets import Dataset, Images
from scratchnet.errors import ScratchnetError
from scratchnet.forward import predict
from scratchnet.versions import scratchnet_version
from trainer.recipes import RECIPES, Hyperparameters
from trainer.sgd import Progress, train_parameters

__all__ = ["TrainingResult", "accuracy", "recipe_name", "train"]


@dataclass(frozen=True)
class TrainingResult:
    """The trained artifact and how long the optimisation took (kept out of the artifact)."""

    artifact: Artifact
    train_seconds: float


def train(
    dataset: Dataset, hyperparameters: Hyperparameters, progress: Progress | None = None
) -> TrainingResult:
    """Train on `dataset` with `hyperparameters`; the metadata records everything but timings."""
    started = time.perf_counter()
    # A learning rate too large overflows: said once below, not as numpy's warnings on the way.
    with np.errstate(over="ignore", invalid="ignore"):
        weights, biases = train_parameters(
            dataset.train_images,
            dataset.train_labels,
            dataset.num_classes,
            hyperparameters,
            progress,
        )
    seconds = time.perf_counter() - started
    if not (np.isfinite(weights).all() and np.isfinite(biases).all()):
        raise ScratchnetError(
            f"training diverged: the weights became NaN or infinite at learning rate "
            f"{hyperparameters.lr:g}, expected a smaller --lr"
        )
    metadata: dict[str, Any] = {
        CLASS_LABELS: [str(label) for label in range(dataset.num_classes)],
        IMAGE_SHAPE: list(dataset.image_shape),
        INPUT_SCALE_KEY: INPUT_SCALE,
        "recipe": recipe_name(hyperparameters),
        "hyperparameters": hyperparameters.as_dict(),
        "dataset": {"name": dataset.name, "checksum": dataset.checksum},
        "train_accuracy": accuracy(weights, biases, dataset.train_images, dataset.train_labels),
        "test_accuracy": accuracy(weights, biases, dataset.test_images, dataset.test_labels),
        VERSIONS: {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scratchnet": scratchnet_version(),
        },
    }
    return TrainingResult(Artifact(weights, biases, metadata), seconds)


def accuracy(
    weights: NDArray[np.float64],
    biases: NDArray[np.float64],
    images: Images,
    labels: NDArray[np.int64],
) -> float:
    """Fraction of `images` whose predicted class is their label."""
    return float(np.mean(predict(weights, biases, images) == labels))


def recipe_name(hyperparameters: Hyperparameters) -> str:
    """The name of the preset `hyperparameters` equal, or "custom"."""
    for name, preset in RECIPES.items():
        if preset == hyperparameters:
            return name
    return "custom"
