"""The client's shared-memory regions: removed whatever happens, a refused target included."""

from __future__ import annotations

import pytest

from clients.shared_memory import Region, registered
from scratchnet.errors import ClientError


def test_regions_are_removed_when_the_target_cannot_take_them() -> None:
    regions = [Region("a", 64), Region("b", 64)]
    try:
        assert all(region.path.exists() for region in regions)
        with (
            pytest.raises(ClientError, match="shared memory needs the servers listed"),
            registered("dns:///localhost:1", regions, timeout=1.0),
        ):
            pass
        assert not any(region.path.exists() for region in regions)
    finally:
        for region in regions:  # whatever the test found, leave nothing in /dev/shm
            region.close()
