"""trainer.recipes: presets and validation."""

from __future__ import annotations

import pytest

from scratchnet.errors import ScratchnetError
from trainer.recipes import RECIPES


def test_the_article_recipe_is_the_articles() -> None:
    assert RECIPES["article"].as_dict() == {
        "epochs": 1,
        "batch_size": 1,
        "lr": 0.01,
        "schedule": "constant",
        "loss": "squared",
        "shuffle": False,
        "seed": 0,
        "init": "zeros",
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epochs": 0}, "epochs must be at least 1, got 0"),
        ({"batch_size": -2}, "batch size must be at least 1, got -2"),
        ({"lr": float("nan")}, "learning rate must be a positive number, got nan"),
        ({"seed": -1}, "seed must be a non-negative integer, got -1"),
        (
            {"schedule": "steps"},
            "unknown schedule 'steps': expected one of constant, linear, cosine",
        ),
        ({"loss": "hinge"}, "unknown loss 'hinge'"),
        ({"init": "ones"}, "unknown init 'ones': expected one of zeros, normal"),
    ],
)
def test_invalid_hyperparameters(change: dict[str, object], message: str) -> None:
    with pytest.raises(ScratchnetError) as caught:
        RECIPES["modern"].replace(**change)
    assert message in str(caught.value)
