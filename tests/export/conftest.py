"""Artifacts with random parameters and a shape that is not MNIST's, for fast unit tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from numpy.typing import NDArray

from export.model import ExportOptions, build_model
from export.parity import Outputs, run_onnxruntime, run_reference
from scratchnet.artifact import Artifact, save_artifact

SMALL_SHAPE = (3, 5, 7)  # C, H, W: deliberately not MNIST's
SMALL_METADATA = {
    "class_labels": ["cat", "dog", "emu"],
    "recipe": "test",
    "metrics": {"test_accuracy": 0.5, "train_seconds": 1.25},
}

MakeArtifact = Callable[..., Artifact]


def _random_artifact(
    shape: tuple[int, int, int] = SMALL_SHAPE,
    seed: int = 0,
    metadata: dict[str, Any] | None = None,
) -> Artifact:
    rng = np.random.default_rng(seed)
    return Artifact(
        weights=rng.normal(size=shape),
        biases=rng.normal(size=shape[:1]),
        metadata=_small_metadata(shape[0]) if metadata is None else metadata,
    )


def _small_metadata(classes: int) -> dict[str, Any]:
    """SMALL_METADATA, without its class labels when they don't fit `classes`."""
    metadata = dict(SMALL_METADATA)
    if len(SMALL_METADATA["class_labels"]) != classes:
        del metadata["class_labels"]
    return metadata


@pytest.fixture
def make_artifact() -> MakeArtifact:
    """make_artifact(shape=(C,H,W), seed=0, metadata=None): random normal float64 parameters."""
    return _random_artifact


@pytest.fixture
def small_artifact(tmp_path: Path) -> Path:
    """A saved random artifact of shape SMALL_SHAPE with class labels and training metadata."""
    path = tmp_path / "small.npz"
    save_artifact(path, _random_artifact())
    return path


Build = Callable[..., onnx.ModelProto]
RunBoth = Callable[[onnx.ModelProto, NDArray[Any]], list[Outputs]]
FAKE_SHA256 = "0" * 64


@pytest.fixture
def build() -> Build:
    """build(artifact, **ExportOptions fields): the validated ModelProto."""

    def _build(artifact: Artifact, **options: Any) -> onnx.ModelProto:
        return build_model(artifact, FAKE_SHA256, ExportOptions(**options))

    return _build


@pytest.fixture
def run_both() -> RunBoth:
    """run_both(model, inputs): [onnxruntime outputs, onnx.reference outputs]."""

    def _run(model: onnx.ModelProto, inputs: NDArray[Any]) -> list[Outputs]:
        return [run_onnxruntime(model, inputs), run_reference(model, inputs)]

    return _run
