"""A plain transcription of the article's training loop: the yardstick for the fast trainer.

Not part of the product: `bench/train_speed.py` times it against `trainer.train`, and the trainer's
tests check that the fast trainer gives the same parameters on a subset.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["train_article_plain"]


def train_article_plain(
    images: NDArray[Any], labels: NDArray[np.int64], num_classes: int, lr: float = 0.01
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """One pass of per-sample SGD over uint8 images in file order, as the article writes it."""
    # The article keeps a float64 copy of every image in [0, 1].
    data = images / 255.0
    weights = np.zeros((num_classes, *images.shape[1:]))
    biases = np.zeros(num_classes)
    for x, y in zip(data, labels, strict=True):
        hidden = np.sum(x * weights, axis=(1, 2)) + biases
        exp = np.exp(hidden)
        total = np.sum(exp)
        softmax = exp / total
        onehot = np.zeros(num_classes)
        onehot[y] = 1
        dloss_dsoftmax = -2 * (onehot - softmax)
        dsoftmax_dhidden = exp * (total - exp) / total**2
        dloss_dhidden = dloss_dsoftmax * dsoftmax_dhidden
        weights -= lr * x[None, :, :] * dloss_dhidden[:, None, None]
        biases -= lr * dloss_dhidden
    return weights, biases
