"""Helpers for the trainer's tests: the trainer's command line, and the plain transcription of the
article's loop (bench/article_reference.py) as a reference."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def trainer_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `python -m trainer ARGS` (in `cwd`, default the repository) and capture its output."""

    def run(*args: str | os.PathLike[str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "trainer", *map(str, args)],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )

    return run


@pytest.fixture(scope="session")
def plain_article() -> Callable[..., tuple[NDArray[np.float64], NDArray[np.float64]]]:
    """bench/article_reference.py's `train_article_plain(images, labels, num_classes, lr)`."""
    spec = importlib.util.spec_from_file_location(
        "article_reference", REPO / "bench" / "article_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    function: Callable[..., tuple[NDArray[np.float64], NDArray[np.float64]]]
    function = module.train_article_plain
    return function
