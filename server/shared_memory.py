"""Triton's system shared-memory extension: clients on the same host hand tensors over in POSIX
shared memory (/dev/shm) instead of the message, and may ask for outputs to be written there.

A client creates a region (tritonclient.utils.shared_memory does), registers it under a name with
its key, offset and size (SystemSharedMemoryRegister), then names it in an input's or output's
parameters: shared_memory_region, shared_memory_byte_size and shared_memory_offset. Inputs are
read in place, without a copy. Only keys naming a file directly in /dev/shm are accepted.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from scratchnet.errors import InvalidArgument, NotFound, ResourceExhausted, clip

__all__ = [
    "BYTE_SIZE",
    "OFFSET",
    "REGION",
    "Region",
    "SharedMemory",
    "requested_region",
]

REGION = "shared_memory_region"
BYTE_SIZE = "shared_memory_byte_size"
OFFSET = "shared_memory_offset"
SHM_FOLDER = Path("/dev/shm")
MAX_REGIONS = 1024
"""Regions registered at once: each maps its whole object, and a process has a bounded number
of mappings (vm.max_map_count), which the server's own memory needs too."""


@dataclass(frozen=True)
class Region:
    """A registered region: a window of a shared-memory object."""

    name: str
    key: str
    offset: int
    byte_size: int
    memory: mmap.mmap


def requested_region(parameters: Mapping[str, Any], what: str) -> tuple[str, int, int] | None:
    """(region, offset, byte size) that a tensor's parameters name, or None if they name none;
    InvalidArgument for an offset or size without a region, or a value of the wrong type (a
    boolean is not an integer here), as Triton refuses them."""
    if REGION not in parameters:
        for stray in (BYTE_SIZE, OFFSET):
            if stray in parameters:
                raise InvalidArgument(
                    f"{what}: '{stray}' can not be specified without '{REGION}': name the "
                    "region, or send the data in the request"
                )
        return None
    region, size, offset = parameters[REGION], parameters.get(BYTE_SIZE), parameters.get(OFFSET, 0)
    if not isinstance(region, str) or not _integer(size) or not _integer(offset):
        raise InvalidArgument(
            f"{what}: shared memory needs parameters {REGION} (string), {BYTE_SIZE} (integer) "
            f"and optionally {OFFSET} (integer)"
        )
    return region, offset, size


def _integer(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


class SharedMemory:
    """The regions registered with the server, by name."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._lock = threading.Lock()
        self._regions: dict[str, Region] = {}

    def register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        """Map `byte_size` bytes at `offset` of the object `key` under `name`."""
        self._check_enabled()
        if not name:
            raise InvalidArgument("a shared memory region needs a name")
        path = _path_of(key)
        with self._lock:
            if name in self._regions:
                raise InvalidArgument(
                    f"shared memory region '{clip(name)}' is already registered: unregister it "
                    "first"
                )
            if len(self._regions) >= MAX_REGIONS:
                raise ResourceExhausted(
                    f"{MAX_REGIONS} shared memory regions are registered, the most the server "
                    "holds at once: unregister some first"
                )
        try:
            # As shm_open opens: never through a symbolic link, which could lead anywhere (the
            # server writes outputs into the region).
            descriptor = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as error:
            reason = "a symbolic link" if error.errno == errno.ELOOP else error.strerror
            raise InvalidArgument(
                f"unable to open shared memory region '{clip(key)}': {reason}"
            ) from None
        try:
            status = os.fstat(descriptor)
            if not stat.S_ISREG(status.st_mode):
                raise InvalidArgument(
                    f"unable to open shared memory region '{clip(key)}': not a shared memory "
                    "object (a FIFO, a device or a folder)"
                )
            size = status.st_size
            if offset < 0 or byte_size <= 0 or offset + byte_size > size:
                raise InvalidArgument(
                    f"shared memory region '{clip(name)}': offset {offset} and byte size "
                    f"{byte_size} do not fit in '{clip(key)}', which holds {size} bytes"
                )
            memory = mmap.mmap(descriptor, size)
        finally:
            os.close(descriptor)
        with self._lock:
            self._regions[name] = Region(name, key, offset, byte_size, memory)

    def unregister(self, name: str = "") -> None:
        """Forget region `name` (every region if ""); a name not registered is no error, as in
        Triton, so that a client's cleanup may unregister what it may not have registered."""
        self._check_enabled()
        with self._lock:
            names = [name] if name else list(self._regions)
            names = [each for each in names if each in self._regions]
            regions = [self._regions.pop(each) for each in names]
        for region in regions:
            # A call still reading it keeps the mapping until its last view goes.
            with contextlib.suppress(BufferError):
                region.memory.close()

    def status(self, name: str = "") -> list[Region]:
        """Region `name`, or every region."""
        self._check_enabled()
        with self._lock:
            if name and name not in self._regions:
                raise NotFound(f"shared memory region '{clip(name)}' is not registered")
            return [self._regions[name]] if name else list(self._regions.values())

    def view(self, name: str, offset: int, byte_size: int, what: str) -> memoryview:
        """`byte_size` bytes at `offset` of region `name` (relative to the region), in place."""
        self._check_enabled()
        with self._lock:
            region = self._regions.get(name)
        if region is None:
            raise InvalidArgument(f"{what}: shared memory region '{clip(name)}' is not registered")
        if offset < 0 or byte_size < 0 or offset + byte_size > region.byte_size:
            raise InvalidArgument(
                f"{what}: {byte_size} bytes at offset {offset} do not fit in shared memory "
                f"region '{clip(name)}' of {region.byte_size} bytes"
            )
        start = region.offset + offset
        return memoryview(region.memory)[start : start + byte_size]

    def _check_enabled(self) -> None:
        if not self.enabled:
            raise InvalidArgument(
                "shared memory is turned off on this server (--no-shared-memory): send the "
                "tensors in the message"
            )


def _path_of(key: str) -> Path:
    name = key[1:] if key.startswith("/") else key
    if not name or "/" in name or "\0" in name or name in (".", ".."):
        raise InvalidArgument(
            f"shared memory key '{clip(key)}': expected the name of an object in {SHM_FOLDER}, "
            "such as '/my_region'"
        )
    return SHM_FOLDER / name
