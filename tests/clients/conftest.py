"""Fixtures of the Python client's tests: the trained parameters behind the served model, a server
with a single worker (to make calls wait) and a port where nothing listens."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RunningServer, start_server
from trainer.artifact import Artifact, load_artifact


@pytest.fixture(scope="session")
def artifact(article_artifact: Path) -> Artifact:
    """The parameters the shared server's model was exported from."""
    return load_artifact(article_artifact)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port where nothing listens: bound for the test's duration but never listening, so that
    a connection is refused and no other process can start listening there meanwhile."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield int(holder.getsockname()[1])


@pytest.fixture(scope="session")
def one_worker_server(
    model_onnx: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """A server with one worker and room to queue calls: while a test keeps the worker busy
    (tests.server.workers.busy_worker), its calls wait, whatever the speed of the machine."""
    running = start_server(
        model_onnx,
        "--workers",
        "1",
        "--max-queue",
        "8",
        tmp_dir=tmp_path_factory.mktemp("one-worker"),
    )
    yield running
    assert running.stop() == 0
