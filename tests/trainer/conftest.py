"""Helpers for the trainer's tests: small data sets written to disk, the trainer's command line,
and the plain transcription of the article's loop (bench/article_reference.py) as a reference."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from trainer.idx import write_idx

REPO = Path(__file__).resolve().parents[2]
Arrays = dict[str, NDArray[Any]]
IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def make_toy(
    height: int = 5,
    width: int = 7,
    classes: int = 3,
    train: int = 150,
    test: int = 45,
    seed: int = 0,
) -> Arrays:
    """A learnable data set: each class lights its own random pattern, plus noise."""
    rng = np.random.default_rng(seed)
    patterns = rng.random((classes, height, width)) < 0.4

    def part(count: int) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
        labels = (np.arange(count) % classes).astype(np.uint8)
        noise = rng.integers(0, 60, size=(count, height, width))
        images = np.where(patterns[labels], 255 - noise, noise).astype(np.uint8)
        return images, labels

    train_images, train_labels = part(train)
    test_images, test_labels = part(test)
    return {
        "train_images": train_images,
        "train_labels": train_labels,
        "test_images": test_images,
        "test_labels": test_labels,
    }


def write_idx_dir(
    folder: Path, arrays: Arrays, compress: bool = True, dotted: bool = False
) -> Path:
    """Write the four arrays as IDX files named like MNIST's (or `train-images.idx3-ubyte`)."""
    folder.mkdir(parents=True, exist_ok=True)
    for role, name in IDX_NAMES.items():
        if dotted:
            name = name.replace("-idx", ".idx")
        write_idx(folder / (name + (".gz" if compress else "")), arrays[role], compress)
    return folder


@pytest.fixture(scope="session")
def toy_maker() -> Callable[..., Arrays]:
    """`make_toy(height, width, classes, train, test, seed)`."""
    return make_toy


@pytest.fixture(scope="session")
def idx_writer() -> Callable[..., Path]:
    """`write_idx_dir(folder, arrays, compress=True, dotted=False)`."""
    return write_idx_dir


@pytest.fixture
def toy_idx(tmp_path: Path) -> Path:
    """A gzip IDX directory of 5x7 images in 3 classes."""
    return write_idx_dir(tmp_path / "toy", make_toy())


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
