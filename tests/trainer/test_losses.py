"""trainer.losses: gradients against finite differences, and the per-row forms against the
vectorised ones."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from scratchnet.forward import probabilities
from trainer.losses import LOSSES

EPSILON = 1e-6


def _scores(seed: int, rows: int = 6, classes: int = 4) -> NDArray[np.float64]:
    return np.random.default_rng(seed).normal(0.0, 2.0, size=(rows, classes))


def test_cross_entropy_gradient_matches_finite_differences() -> None:
    scores, labels = _scores(0), np.array([0, 1, 2, 3, 1, 0])
    loss = LOSSES["cross-entropy"]
    numeric = np.zeros_like(scores)
    for c in range(scores.shape[1]):
        step = np.zeros_like(scores)
        step[:, c] = EPSILON
        numeric[:, c] = (loss.value(scores + step, labels) - loss.value(scores - step, labels)) / (
            2 * EPSILON
        )
    np.testing.assert_allclose(loss.gradient(scores, labels), numeric, atol=1e-8)


def test_cross_entropy_value_is_minus_log_probability_even_for_large_scores() -> None:
    scores, labels = np.array([[1000.0, 0.0], [0.0, 1.0]]), np.array([1, 1])
    value = LOSSES["cross-entropy"].value(scores, labels)
    np.testing.assert_allclose(value, [1000.0, -np.log(probabilities(scores[1:])[0, 1])])


def test_squared_gradient_is_the_articles_diagonal_derivative() -> None:
    # The article differentiates each element loss[c] = (onehot[c] - p[c])^2 by its own score
    # h[c] only: check exactly that against finite differences.
    scores, labels = _scores(1), np.array([3, 2, 1, 0, 0, 2])
    onehot = np.eye(scores.shape[1])[labels]

    def elementwise(values: NDArray[np.float64]) -> NDArray[np.float64]:
        errors: NDArray[np.float64] = onehot - probabilities(values)
        return errors**2

    numeric = np.zeros_like(scores)
    for c in range(scores.shape[1]):
        step = np.zeros_like(scores)
        step[:, c] = EPSILON
        numeric[:, c] = (elementwise(scores + step) - elementwise(scores - step))[:, c] / (
            2 * EPSILON
        )
    gradient = LOSSES["squared"].gradient(scores, labels)
    np.testing.assert_allclose(gradient, numeric, atol=1e-8)
    np.testing.assert_allclose(LOSSES["squared"].value(scores, labels), elementwise(scores).sum(1))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_row_gradient_equals_the_vectorised_gradient(name: str) -> None:
    loss = LOSSES[name]
    scores, labels = _scores(2, rows=20, classes=7), np.arange(20) % 7
    rows = [
        loss.row_gradient(row.tolist(), int(label))
        for row, label in zip(scores, labels, strict=True)
    ]
    np.testing.assert_allclose(
        np.array(rows), loss.gradient(scores, labels), rtol=1e-13, atol=1e-15
    )


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradients_stay_finite_for_huge_scores(name: str) -> None:
    scores, labels = np.array([[800.0, -800.0, 0.0]]), np.array([1])
    assert np.isfinite(LOSSES[name].gradient(scores, labels)).all()
    assert all(np.isfinite(LOSSES[name].row_gradient(scores[0].tolist(), 1)))
