"""server.memory: the allocator settings are applied, except those the environment sets."""

from __future__ import annotations

import platform

import pytest

from server.memory import SETTINGS, tune_allocator


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_every_setting_applies_unless_the_environment_sets_it() -> None:
    assert tune_allocator({}) == list(SETTINGS)
    assert tune_allocator({"MALLOC_ARENA_MAX": "2"}) == [
        n for n in SETTINGS if n != "MALLOC_ARENA_MAX"
    ]
