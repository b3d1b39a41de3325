"""Fixtures of the clients' tests: a port where nothing listens."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port where nothing listens: bound for the test's duration but never listening, so that
    a connection is refused and no other process can start listening there meanwhile."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield int(holder.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port where connections are accepted (into the kernel's backlog) but nothing is ever
    answered: a listener that is not the server a client expects."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield int(listener.getsockname()[1])
