"""The trainer package's public surface."""

from __future__ import annotations

import types

import trainer


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(trainer).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"
    }
    assert set(trainer.__all__) == public
    assert sorted(trainer.__all__) == sorted(set(trainer.__all__))
