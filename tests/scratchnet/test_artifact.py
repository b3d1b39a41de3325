"""scratchnet.artifact: a deterministic npz, and a loader that rejects anything malformed."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scratchnet.artifact import Artifact, load_artifact, save_artifact
from scratchnet.errors import ArtifactError

GOOD = {
    "weights": np.arange(24, dtype=np.float64).reshape(2, 3, 4),
    "biases": np.array([0.5, -0.5]),
    "metadata": np.array(json.dumps({"class_labels": ["a", "b"]})),
}


def test_round_trip_and_byte_identical_saves(tmp_path: Path) -> None:
    artifact = Artifact(GOOD["weights"], GOOD["biases"], {"class_labels": ["a", "b"], "x": 1.5})
    save_artifact(tmp_path / "a.npz", artifact)
    save_artifact(tmp_path / "b.npz", artifact)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    loaded = load_artifact(tmp_path / "a.npz")
    np.testing.assert_array_equal(loaded.weights, artifact.weights)
    np.testing.assert_array_equal(loaded.biases, artifact.biases)
    assert loaded.metadata == artifact.metadata
    assert loaded.class_labels == ["a", "b"] and loaded.image_shape == (3, 4)
    with np.load(tmp_path / "a.npz", allow_pickle=False) as npz:
        assert sorted(npz.files) == ["biases", "metadata", "weights"]


def _write(path: Path, **changes: Any) -> Path:
    arrays = {key: value for key, value in {**GOOD, **changes}.items() if value is not None}
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"biases": None}, "lacks biases: expected keys weights, biases, metadata"),
        ({"metadata": None}, "lacks metadata"),
        ({"weights": GOOD["weights"].astype(np.float32)}, "must be float64, got float32"),
        (
            {"weights": GOOD["weights"].reshape(2, 12)},
            "weights must have shape [C, H, W], got [2, 12]",
        ),
        ({"biases": np.zeros(3)}, "biases must have shape [2] to match weights [2, 3, 4], got [3]"),
        ({"biases": np.array([np.nan, 0.0])}, "must be finite"),
        ({"weights": np.full((2, 3, 4), np.inf)}, "must be finite"),
        ({"metadata": np.array("{not json")}, "metadata is not valid JSON"),
        ({"metadata": np.array("[1, 2]")}, "metadata must be a JSON object"),
        ({"metadata": np.zeros(2)}, "metadata must be a JSON string"),
        (
            {"metadata": np.array('{"class_labels": ["a", "b", "c"]}')},
            "class_labels must be a list of 2 strings",
        ),
        (
            {"metadata": np.array('{"input_shape": [28, 28]}')},
            "input_shape [28, 28] does not match the weights' images [3, 4]",
        ),
    ],
    ids=[
        "no-biases",
        "no-metadata",
        "float32",
        "rank",
        "bias-shape",
        "nan",
        "inf",
        "bad-json",
        "json-list",
        "metadata-array",
        "label-count",
        "input-shape",
    ],
)
def test_the_loader_rejects(tmp_path: Path, changes: dict[str, Any], fragment: str) -> None:
    path = _write(tmp_path / "bad.npz", **changes)
    with pytest.raises(ArtifactError) as caught:
        load_artifact(path)
    assert fragment in str(caught.value) and str(path) in str(caught.value)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not found"):
        load_artifact(tmp_path / "absent.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    np.save(tmp_path / "single.npy", np.zeros(3))
    for name in ("junk.npz", "single.npy"):
        with pytest.raises(ArtifactError, match="is not an npz file: expected the"):
            load_artifact(tmp_path / name)
    with zipfile.ZipFile(tmp_path / "damaged.npz", "w") as archive:
        for key in ("weights", "biases", "metadata"):
            archive.writestr(f"{key}.npy", b"\x93NUMPY garbage")
    with pytest.raises(ArtifactError, match="not a readable npz file"):
        load_artifact(tmp_path / "damaged.npz")


def test_save_refuses_invalid_parameters(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="finite"):
        save_artifact(tmp_path / "x.npz", Artifact(np.full((1, 1, 1), np.nan), np.zeros(1)))
    with pytest.raises(ArtifactError, match="class_labels must be a list of 2 strings"):
        save_artifact(
            tmp_path / "x.npz", Artifact(GOOD["weights"], GOOD["biases"], {"class_labels": ["a"]})
        )
    assert not (tmp_path / "x.npz").exists()
