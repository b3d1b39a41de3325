"""The two losses the trainer knows, as gradients with respect to the class scores.

- `squared`: the article's element-wise squared error on the softmax p,
  loss[c] = (onehot[c] - p[c])^2, with its gradient dloss[c]/dscore[c] = -2 (onehot[c] - p[c])
  p[c] (1 - p[c]). Only the diagonal of the softmax Jacobian is used, so this is not the gradient
  of sum(loss): it is what the article does, reproduced exactly.
- `cross-entropy`: -log p[label], whose gradient is p - onehot.

Each loss comes twice: vectorised over rows of scores (mini-batches), and for one row of plain
Python floats, because per-sample SGD resolves samples one at a time and numpy's per-call overhead
dominates on arrays of C values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from scratchnet.forward import probabilities

__all__ = ["LOSSES", "Loss"]

RowGradient = Callable[[list[float], int], list[float]]


@dataclass(frozen=True)
class Loss:
    """A loss: its per-sample value and its gradient with respect to the scores."""

    value: Callable[[NDArray[np.float64], NDArray[np.int64]], NDArray[np.float64]]
    gradient: Callable[[NDArray[np.float64], NDArray[np.int64]], NDArray[np.float64]]
    row_gradient: RowGradient


def _onehot(labels: NDArray[np.int64], classes: int) -> NDArray[np.float64]:
    return np.eye(classes)[labels]


def _softmax_row(scores: list[float]) -> list[float]:
    top = max(scores)
    exps = [math.exp(score - top) for score in scores]
    scale = 1.0 / sum(exps)
    return [value * scale for value in exps]


def _squared_value(scores: NDArray[np.float64], labels: NDArray[np.int64]) -> NDArray[np.float64]:
    """Sum over classes of the article's element-wise loss (onehot - p)^2, per sample."""
    errors = _onehot(labels, scores.shape[1]) - probabilities(scores)
    return np.asarray((errors**2).sum(axis=1), dtype=np.float64)


def _squared_gradient(
    scores: NDArray[np.float64], labels: NDArray[np.int64]
) -> NDArray[np.float64]:
    """The article's gradient: -2 (onehot - p) * p (1 - p), per sample and class."""
    p = probabilities(scores)
    return -2.0 * (_onehot(labels, scores.shape[1]) - p) * p * (1.0 - p)


def _squared_row_gradient(scores: list[float], label: int) -> list[float]:
    """`_squared_gradient` for one sample, in plain floats."""
    p = _softmax_row(scores)
    gradient = [2.0 * q * q * (1.0 - q) for q in p]
    q = p[label]
    gradient[label] = -2.0 * (1.0 - q) * q * (1.0 - q)
    return gradient


def _cross_entropy_value(
    scores: NDArray[np.float64], labels: NDArray[np.int64]
) -> NDArray[np.float64]:
    """-log p[label] per sample, computed from shifted scores so that it never overflows."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1))
    return np.asarray(log_norm - shifted[np.arange(len(labels)), labels], dtype=np.float64)


def _cross_entropy_gradient(
    scores: NDArray[np.float64], labels: NDArray[np.int64]
) -> NDArray[np.float64]:
    """p - onehot, per sample and class."""
    return probabilities(scores) - _onehot(labels, scores.shape[1])


def _cross_entropy_row_gradient(scores: list[float], label: int) -> list[float]:
    """`_cross_entropy_gradient` for one sample, in plain floats."""
    gradient = _softmax_row(scores)
    gradient[label] -= 1.0
    return gradient


LOSSES = {
    "squared": Loss(_squared_value, _squared_gradient, _squared_row_gradient),
    "cross-entropy": Loss(
        _cross_entropy_value, _cross_entropy_gradient, _cross_entropy_row_gradient
    ),
}
