"""trainer.training and the article's reference figures (SEED.md) on the bundled MNIST."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scratchnet.artifact import load_artifact
from scratchnet.datasets import Dataset
from trainer.recipes import RECIPES
from trainer.training import accuracy, recipe_name, train

# The trained parameters of the article's recipe, from SEED.md.
REFERENCE_BIASES = [
    0.359827629826811,
    0.770472035815011,
    0.610462951960486,
    0.506669548513286,
    0.694980289993304,
    1.302067180610096,
    0.585383423057191,
    0.886999371346184,
    -0.036004106330726,
    0.535295470473115,
]
REFERENCE_NORMS = [
    4.043129226148285,
    4.047328543623825,
    4.320442428985817,
    4.324320067397585,
    4.463753014704769,
    4.336704454173367,
    4.132787287594191,
    4.348493205931075,
    4.223048050880522,
    4.517816906487665,
]
REFERENCE_SUM = 501.84791277761263
REFERENCE_W_7_14_14 = 0.05746245989086209


def test_defaults_reproduce_the_article_exactly(article_artifact: Path) -> None:
    artifact = load_artifact(article_artifact)
    weights, biases = artifact.weights, artifact.biases
    assert artifact.metadata["test_accuracy"] == 0.9104
    assert artifact.metadata["recipe"] == "article"
    np.testing.assert_allclose(biases, REFERENCE_BIASES, rtol=0, atol=1e-9)
    norms = np.linalg.norm(weights.reshape(10, -1), axis=1)
    np.testing.assert_allclose(norms, REFERENCE_NORMS, rtol=0, atol=1e-9)
    assert abs(weights.sum() - REFERENCE_SUM) <= 1e-9
    assert abs(weights[7, 14, 14] - REFERENCE_W_7_14_14) <= 1e-9


def test_the_article_metadata(article_artifact: Path, mnist: Dataset) -> None:
    metadata = load_artifact(article_artifact).metadata
    assert metadata["class_labels"] == [str(digit) for digit in range(10)]
    assert metadata["input_shape"] == [28, 28]
    assert metadata["input_scale"] == 1 / 255
    assert metadata["hyperparameters"] == RECIPES["article"].as_dict()
    assert metadata["dataset"] == {"name": "mnist", "checksum": mnist.checksum}
    assert 0.9 < metadata["train_accuracy"] < 0.92


def test_the_modern_recipe_beats_the_article_on_mnist(mnist: Dataset) -> None:
    # The bar for the better recipe, with its documented seed (docs/trainer.md: 0.9262).
    metadata = train(mnist, RECIPES["modern"]).artifact.metadata
    assert metadata["test_accuracy"] >= 0.925
    assert metadata["recipe"] == "modern" and metadata["hyperparameters"]["seed"] == 0


def test_train_records_everything_but_time(
    toy_maker: Callable[..., dict[str, NDArray[Any]]],
) -> None:
    toy = toy_maker()
    dataset = Dataset(
        "toy",
        toy["train_images"],
        toy["train_labels"].astype(np.int64),
        toy["test_images"],
        toy["test_labels"].astype(np.int64),
        3,
        "abc",
    )
    first, second = train(dataset, RECIPES["modern"]), train(dataset, RECIPES["modern"])
    assert first.train_seconds > 0
    assert first.artifact.metadata == second.artifact.metadata
    assert first.artifact.metadata["recipe"] == "modern"
    assert first.artifact.metadata["dataset"] == {"name": "toy", "checksum": "abc"}
    assert first.artifact.metadata["test_accuracy"] == accuracy(
        first.artifact.weights, first.artifact.biases, dataset.test_images, dataset.test_labels
    )


def test_recipe_names() -> None:
    assert recipe_name(RECIPES["article"]) == "article"
    assert recipe_name(RECIPES["modern"]) == "modern"
    assert recipe_name(RECIPES["modern"].replace(epochs=2)) == "custom"


def test_accuracy_counts_argmax_hits() -> None:
    weights = np.zeros((2, 1, 2))
    weights[0, 0, 0] = weights[1, 0, 1] = 1.0
    images = np.array([[[255, 0]], [[0, 255]], [[255, 0]], [[0, 255]]], dtype=np.uint8)
    assert accuracy(weights, np.zeros(2), images, np.array([0, 1, 1, 1])) == 0.75
