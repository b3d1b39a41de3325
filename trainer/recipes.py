"""Training recipes: every hyperparameter in one record, and the named presets.

`article` is the article's recipe exactly: zero init, one pass in file order, per-sample SGD at
lr 0.01 on its element-wise squared error. `modern` is the better recipe (cross-entropy,
shuffled mini-batches, several epochs, a decaying learning rate); see docs/trainer.md for figures.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from scratchnet.errors import ScratchnetError
from trainer.losses import LOSSES
from trainer.schedules import SCHEDULES

__all__ = ["INITS", "RECIPES", "Hyperparameters"]

# How the weights start: all zeros, or normal with this standard deviation (biases start at zero).
INITS = {"zeros": 0.0, "normal": 0.01}


@dataclass(frozen=True)
class Hyperparameters:
    """Everything that decides a training run, besides the data."""

    epochs: int
    batch_size: int
    lr: float
    schedule: str
    loss: str
    shuffle: bool
    seed: int
    init: str

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            problems.append(f"batch size must be at least 1, got {self.batch_size}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            problems.append(f"learning rate must be a positive number, got {self.lr}")
        if self.seed < 0:
            problems.append(f"seed must be a non-negative integer, got {self.seed}")
        for field, value, known in (
            ("schedule", self.schedule, SCHEDULES),
            ("loss", self.loss, LOSSES),
            ("init", self.init, INITS),
        ):
            if value not in known:
                problems.append(f"unknown {field} {value!r}: expected one of {', '.join(known)}")
        if problems:
            raise ScratchnetError("; ".join(problems))

    def replace(self, **changes: Any) -> Hyperparameters:
        """A copy with some values changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """Every hyperparameter by name, for the artifact's metadata."""
        return dataclasses.asdict(self)


RECIPES = {
    "article": Hyperparameters(
        epochs=1,
        batch_size=1,
        lr=0.01,
        schedule="constant",
        loss="squared",
        shuffle=False,
        seed=0,
        init="zeros",
    ),
    "modern": Hyperparameters(
        epochs=5,
        batch_size=32,
        lr=1.0,
        schedule="linear",
        loss="cross-entropy",
        shuffle=True,
        seed=0,
        init="zeros",
    ),
}
