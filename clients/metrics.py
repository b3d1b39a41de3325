"""How well predicted labels match true ones: accuracy, confusion matrix, per-class precision and
recall. Plain numpy, no network."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["Classification", "classification"]


@dataclass(frozen=True)
class Classification:
    """Counts and rates of one labelled set; rows of `confusion` are true classes."""

    confusion: NDArray[np.int64]

    @property
    def total(self) -> int:
        """Number of images."""
        return int(self.confusion.sum())

    @property
    def correct(self) -> int:
        """Number of images whose predicted label is the true one."""
        return int(np.trace(self.confusion))

    @property
    def accuracy(self) -> float:
        """correct / total."""
        return self.correct / self.total

    @property
    def support(self) -> NDArray[np.int64]:
        """Number of images of each true class."""
        return np.asarray(self.confusion.sum(axis=1), dtype=np.int64)

    @property
    def precision(self) -> list[float | None]:
        """Per class, the share of images predicted as it that are it; None if never predicted."""
        return _ratios(np.diag(self.confusion), self.confusion.sum(axis=0))

    @property
    def recall(self) -> list[float | None]:
        """Per class, the share of its images predicted as it; None if it has no images."""
        return _ratios(np.diag(self.confusion), self.support)


def classification(
    true: NDArray[np.int64], predicted: NDArray[np.int64], num_classes: int
) -> Classification:
    """Compare labels in 0..num_classes-1 (both [N], N ≥ 1)."""
    pairs = true.astype(np.int64) * num_classes + predicted
    counts = np.bincount(pairs, minlength=num_classes * num_classes)
    return Classification(counts.reshape(num_classes, num_classes).astype(np.int64))


def _ratios(hits: NDArray[np.int64], totals: NDArray[np.int64]) -> list[float | None]:
    return [int(h) / int(t) if t else None for h, t in zip(hits, totals, strict=True)]
