"""server.shared_memory in process: regions of /dev/shm objects, read in place, bounds checked."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from scratchnet.errors import InvalidArgument, NotFound
from server.shared_memory import SHM_FOLDER, SharedMemory, requested_region


@pytest.fixture
def key() -> Iterator[str]:
    name = f"scratchnet-test-{uuid.uuid4().hex[:8]}"
    path = SHM_FOLDER / name
    path.write_bytes(bytes(range(64)))
    yield f"/{name}"
    path.unlink(missing_ok=True)


def test_a_region_is_a_window_read_and_written_in_place(key: str) -> None:
    shared = SharedMemory()
    shared.register("r", key, 16, 32)
    view = shared.view("r", 4, 8, "input 'x'")
    assert bytes(view) == bytes(range(20, 28))
    view[:] = b"\xff" * 8
    assert (SHM_FOLDER / key[1:]).read_bytes()[20:28] == b"\xff" * 8
    assert [(r.name, r.key, r.offset, r.byte_size) for r in shared.status()] == [("r", key, 16, 32)]
    with pytest.raises(InvalidArgument, match="8 bytes at offset 30 do not fit"):
        shared.view("r", 30, 8, "input 'x'")
    with pytest.raises(InvalidArgument, match="is already registered"):
        shared.register("r", key, 0, 8)
    del view
    shared.unregister()
    assert shared.status() == []
    with pytest.raises(NotFound):
        shared.unregister("r")


@pytest.mark.parametrize("bad", ["/../etc/passwd", "/a/b", "", "/"])
def test_only_objects_directly_in_dev_shm_can_be_registered(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="expected the name of an object in /dev/shm"):
        SharedMemory().register("r", bad, 0, 8)


def test_a_missing_object_a_region_too_large_and_a_disabled_server_are_refused(
    key: str, tmp_path: Path
) -> None:
    with pytest.raises(InvalidArgument, match="unable to open shared memory region"):
        SharedMemory().register("r", "/no-such-object-here", 0, 8)
    with pytest.raises(InvalidArgument, match="do not fit in"):
        SharedMemory().register("r", key, 60, 8)
    with pytest.raises(InvalidArgument, match="--no-shared-memory"):
        SharedMemory(enabled=False).register("r", key, 0, 8)
    assert requested_region({}, "x") is None
    params = {"shared_memory_region": "r", "shared_memory_byte_size": 8}
    assert requested_region(params, "x") == ("r", 0, 8)
