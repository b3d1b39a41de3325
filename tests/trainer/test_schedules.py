"""trainer.schedules: learning rate per step."""

from __future__ import annotations

import numpy as np

from trainer.schedules import learning_rates


def test_constant_is_exactly_the_base_rate() -> None:
    assert (learning_rates("constant", 0.01, 5) == 0.01).all()


def test_linear_and_cosine_start_at_the_base_rate_and_decay() -> None:
    for name in ("linear", "cosine"):
        rates = learning_rates(name, 0.5, 100)
        assert rates[0] == 0.5
        assert (np.diff(rates) < 0).all() and rates[-1] > 0
    np.testing.assert_allclose(learning_rates("linear", 1.0, 4), [1.0, 0.75, 0.5, 0.25])
    np.testing.assert_allclose(learning_rates("cosine", 1.0, 2), [1.0, 0.5])
