"""The export package's public surface is exactly its __all__."""

from __future__ import annotations

import types

import export


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(export).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"
    }
    assert sorted(export.__all__) == sorted(public)
    assert all(hasattr(export, name) for name in export.__all__)
