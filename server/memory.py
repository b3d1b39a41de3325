"""glibc's allocator, tuned for a server whose requests are megabytes.

By default glibc serves every allocation above 128 KiB (a threshold that adapts up to 32 MiB)
with a fresh mmap and gives it back on free: each multi-MB request then pays for faulting in new
pages, several times over (the message, its arrays, the model's intermediates), and timings
swing between runs as the threshold adapts. Raising the mmap threshold and keeping freed memory
in the heap reuses the same pages from one request to the next; capping the arenas bounds what
the inference threads can keep. docs/performance.md shows what it buys.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Mapping

__all__ = ["SETTINGS", "release_free_memory", "tune_allocator"]

# mallopt parameters (malloc.h) and the values set, in bytes (or arenas).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -2, -3, -8
SETTINGS: dict[str, tuple[int, int]] = {
    "MALLOC_MMAP_THRESHOLD_": (_M_MMAP_THRESHOLD, 256 << 20),
    "MALLOC_TRIM_THRESHOLD_": (_M_TRIM_THRESHOLD, 512 << 20),
    "MALLOC_TOP_PAD_": (_M_TOP_PAD, 64 << 20),
    "MALLOC_ARENA_MAX": (_M_ARENA_MAX, 4),
}
"""The glibc tunable's environment variable -> (mallopt parameter, value)."""
_log = logging.getLogger(__name__)


def tune_allocator(environ: Mapping[str, str] = os.environ) -> list[str]:
    """Apply SETTINGS with mallopt, except those the environment sets itself; return the names
    applied (none where the C library is not glibc)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return []
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
        return []
    applied = []
    for variable, (parameter, value) in SETTINGS.items():
        if variable in environ:
            continue  # the operator's choice wins
        if libc.mallopt(ctypes.c_int(parameter), ctypes.c_int(value)) == 1:
            applied.append(variable)
    _log.debug("allocator tuned: %s", ", ".join(applied) or "nothing")
    return applied


def release_free_memory() -> bool:
    """Give the heap's free pages back to the system (glibc's malloc_trim), e.g. after loading a
    model, whose probes allocate far more than an idle server needs; False where not glibc."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name is not None else None
    if libc is None or not hasattr(libc, "malloc_trim"):
        return False
    libc.malloc_trim(ctypes.c_size_t(0))
    return True
