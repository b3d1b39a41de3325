"""trainer.sgd: the blocked per-sample trainer and mini-batches against plain loops."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from scratchnet.datasets import Dataset
from scratchnet.forward import scale_pixels
from trainer.losses import LOSSES
from trainer.recipes import RECIPES, Hyperparameters
from trainer.schedules import learning_rates
from trainer.sgd import train_parameters

Arrays = dict[str, NDArray[Any]]
Params = tuple[NDArray[np.float64], NDArray[np.float64]]


def plain_sgd(
    images: NDArray[Any], labels: NDArray[Any], classes: int, hp: Hyperparameters
) -> Params:
    """Textbook SGD in file order: one matrix product per (mini-)batch, nothing clever."""
    count = len(images)
    x_all = scale_pixels(images).reshape(count, -1)
    weights, biases = np.zeros((classes, x_all.shape[1])), np.zeros(classes)
    steps = -(-count // hp.batch_size)
    rates = learning_rates(hp.schedule, hp.lr, steps * hp.epochs)
    step = 0
    for _ in range(hp.epochs):
        for start in range(0, count, hp.batch_size):
            x, y = x_all[start : start + hp.batch_size], labels[start : start + hp.batch_size]
            gradient = LOSSES[hp.loss].gradient(x @ weights.T + biases, y)
            weights -= rates[step] * gradient.T @ x / len(x)
            biases -= rates[step] * gradient.mean(axis=0)
            step += 1
    return weights.reshape(classes, *images.shape[1:]), biases


def _max_difference(a: Params, b: Params) -> float:
    return max(float(np.abs(a[0] - b[0]).max()), float(np.abs(a[1] - b[1]).max()))


@pytest.mark.parametrize("block", [64, 37, 1])
def test_blocked_article_training_equals_the_plain_transcription(
    mnist: Dataset, plain_article: Callable[..., Params], block: int
) -> None:
    images, labels = mnist.train_images[:3000], mnist.train_labels[:3000]
    fast = train_parameters(images, labels, 10, RECIPES["article"], sample_block=block)
    assert _max_difference(fast, plain_article(images, labels, 10)) <= 1e-12


@pytest.mark.parametrize(
    "changes",
    [
        {"loss": "cross-entropy", "schedule": "linear", "epochs": 2, "lr": 0.3},
        {"loss": "squared", "schedule": "cosine", "epochs": 2, "lr": 1.0, "batch_size": 7},
        {"loss": "cross-entropy", "schedule": "constant", "epochs": 3, "lr": 0.5, "batch_size": 32},
    ],
    ids=["per-sample", "batch-7", "batch-32"],
)
def test_every_recipe_equals_plain_sgd(
    toy_maker: Callable[..., Arrays], changes: dict[str, Any]
) -> None:
    toy = toy_maker(train=301)
    hp = RECIPES["article"].replace(**changes)
    fast = train_parameters(
        toy["train_images"], toy["train_labels"].astype(np.int64), 3, hp, sample_block=16
    )
    plain = plain_sgd(toy["train_images"], toy["train_labels"], 3, hp)
    assert _max_difference(fast, plain) <= 1e-12


def test_float_images_train_as_their_values(toy_maker: Callable[..., Arrays]) -> None:
    toy = toy_maker()
    floats = (toy["train_images"] / 256.0).astype(np.float32)
    labels = toy["train_labels"].astype(np.int64)
    fast = train_parameters(floats, labels, 3, RECIPES["article"], sample_block=16)
    assert _max_difference(fast, plain_sgd(floats, labels, 3, RECIPES["article"])) <= 1e-12


def test_one_full_batch_step_follows_the_finite_difference_gradient(
    toy_maker: Callable[..., Arrays],
) -> None:
    toy = toy_maker(height=3, width=4, train=12)
    images, labels = toy["train_images"], toy["train_labels"].astype(np.int64)
    hp = RECIPES["modern"].replace(
        epochs=1, batch_size=12, lr=1.0, shuffle=False, schedule="constant"
    )
    weights, biases = train_parameters(images, labels, 3, hp)
    x = scale_pixels(images).reshape(12, -1)

    def mean_loss(flat_weights: NDArray[np.float64], bias: NDArray[np.float64]) -> float:
        return float(LOSSES["cross-entropy"].value(x @ flat_weights.T + bias, labels).mean())

    params = np.zeros(3 * 12 + 3)
    numeric = np.zeros_like(params)
    for index in range(len(params)):
        step = np.zeros_like(params)
        step[index] = 1e-6
        plus, minus = params + step, params - step
        numeric[index] = (
            mean_loss(plus[:36].reshape(3, 12), plus[36:])
            - mean_loss(minus[:36].reshape(3, 12), minus[36:])
        ) / 2e-6
    # From zero parameters one step at lr 1 moves them by minus the gradient.
    np.testing.assert_allclose(-weights.reshape(-1), numeric[:36], atol=1e-8)
    np.testing.assert_allclose(-biases, numeric[36:], atol=1e-8)


def test_shuffling_depends_on_the_seed_only(toy_maker: Callable[..., Arrays]) -> None:
    toy = toy_maker()
    images, labels = toy["train_images"], toy["train_labels"].astype(np.int64)
    hp = RECIPES["modern"].replace(epochs=2, batch_size=1)
    first = train_parameters(images, labels, 3, hp)
    assert _max_difference(first, train_parameters(images, labels, 3, hp)) == 0.0
    assert _max_difference(first, train_parameters(images, labels, 3, hp.replace(seed=1))) > 0
    assert (
        _max_difference(first, train_parameters(images, labels, 3, hp.replace(shuffle=False))) > 0
    )


def test_random_init_depends_on_the_seed(toy_maker: Callable[..., Arrays]) -> None:
    toy = toy_maker()
    images, labels = toy["train_images"], toy["train_labels"].astype(np.int64)
    hp = RECIPES["article"].replace(init="normal")
    zero_start = train_parameters(images, labels, 3, RECIPES["article"])
    assert _max_difference(zero_start, train_parameters(images, labels, 3, hp)) > 0
    assert (
        _max_difference(
            train_parameters(images, labels, 3, hp), train_parameters(images, labels, 3, hp)
        )
        == 0.0
    )


@pytest.mark.parametrize("batch_size", [1, 10])
def test_progress_counts_every_sample(toy_maker: Callable[..., Arrays], batch_size: int) -> None:
    toy = toy_maker(train=130)
    done: list[int] = []
    hp = RECIPES["article"].replace(epochs=2, batch_size=batch_size)
    train_parameters(toy["train_images"], toy["train_labels"].astype(np.int64), 3, hp, done.append)
    assert sum(done) == 260


# Fewer images for the article's recipe, whose per-sample loop tracemalloc slows down.
@pytest.mark.parametrize(("recipe", "count"), [("article", 5000), ("modern", 60000)])
def test_training_never_holds_a_float_copy_of_the_training_set(
    mnist: Dataset, recipe: str, count: int
) -> None:
    # numpy reports its buffers to tracemalloc. The article's script keeps images / 255 for the
    # whole set, 8 bytes a pixel; the trainer must stay below the uint8 pixels' own size.
    images, labels = mnist.train_images[:count], mnist.train_labels[:count]
    tracemalloc.start()
    try:
        train_parameters(images, labels, mnist.num_classes, RECIPES[recipe].replace(epochs=1))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < images.nbytes
