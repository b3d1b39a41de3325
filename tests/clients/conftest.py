"""Fixtures of the Python client's tests: the trained parameters behind the served model, and a
port where nothing listens."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from trainer.artifact import Artifact, load_artifact


@pytest.fixture(scope="session")
def artifact(article_artifact: Path) -> Artifact:
    """The parameters the shared server's model was exported from."""
    return load_artifact(article_artifact)


@pytest.fixture
def closed_port() -> int:
    """A port that was free a moment ago: nothing listens there."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
