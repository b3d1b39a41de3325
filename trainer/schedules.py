"""Learning-rate schedules: the factor applied to the base rate at each point of training."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

__all__ = ["SCHEDULES", "learning_rates"]


def _constant(progress: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.ones_like(progress)


def _linear(progress: NDArray[np.float64]) -> NDArray[np.float64]:
    return 1.0 - progress


def _cosine(progress: NDArray[np.float64]) -> NDArray[np.float64]:
    return 0.5 * (1.0 + np.cos(np.pi * progress))


# name -> factor as a function of the fraction of training done before the step, in [0, 1).
SCHEDULES: dict[str, Callable[[NDArray[np.float64]], NDArray[np.float64]]] = {
    "constant": _constant,
    "linear": _linear,
    "cosine": _cosine,
}


def learning_rates(schedule: str, lr: float, steps: int) -> NDArray[np.float64]:
    """The learning rate of each of `steps` updates under `schedule`, starting from `lr`."""
    progress = np.arange(steps, dtype=np.float64) / steps
    return lr * SCHEDULES[schedule](progress)
