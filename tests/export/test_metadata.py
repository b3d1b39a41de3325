"""What a stranger reads from model.onnx: producer, version, doc strings and metadata_props."""

from __future__ import annotations

import hashlib
import json
from importlib import metadata as package_metadata
from pathlib import Path

import pytest

from export import ExportOptions, export_artifact, model_bytes
from scratchnet.contract import INPUT_SCALE


def _props(model) -> dict[str, str]:
    return {prop.key: prop.value for prop in model.metadata_props}


def test_producer_and_model_version(small_artifact: Path) -> None:
    model = export_artifact(small_artifact, ExportOptions(model_version=7))
    assert model.producer_name == "scratchnet-export"
    assert model.producer_version == package_metadata.version("scratchnet")
    assert model.model_version == 7
    assert export_artifact(small_artifact, ExportOptions()).model_version == 1


@pytest.mark.parametrize(
    ("dtype", "words"), [("float32", "float32 [batch, 5, 7]"), ("uint8", "uint8 [batch, 5, 7]")]
)
def test_doc_string_says_how_to_feed_the_input(
    small_artifact: Path, dtype: str, words: str
) -> None:
    doc = export_artifact(small_artifact, ExportOptions(input_dtype=dtype)).doc_string
    assert words in doc
    assert "255" in doc and "class_labels" in doc and "[batch, 3]" in doc


def test_metadata_props(small_artifact: Path) -> None:
    model = export_artifact(small_artifact, ExportOptions(input_dtype="uint8"))
    props = _props(model)
    assert json.loads(props["class_labels"]) == ["cat", "dog", "emu"]
    assert props["input_scale"] == repr(1 / 255) and float(props["input_scale"]) == INPUT_SCALE
    assert props["input_dtype"] == "uint8"
    assert props["artifact_sha256"] == hashlib.sha256(small_artifact.read_bytes()).hexdigest()
    # The artifact's own metadata, nested objects flattened to dotted keys, values as JSON.
    assert props["recipe"] == "test"
    assert json.loads(props["metrics.test_accuracy"]) == 0.5
    assert json.loads(props["metrics.train_seconds"]) == 1.25
    assert list(props) == sorted(props)


def test_class_labels_default_to_indices(make_artifact, build) -> None:
    props = _props(build(make_artifact(metadata={})))
    assert json.loads(props["class_labels"]) == ["0", "1", "2"]


def test_exporter_keys_win_over_artifact_keys(make_artifact, build) -> None:
    artifact = make_artifact(metadata={"input_scale": "bogus", "input_dtype": 3, "seed": 5})
    props = _props(build(artifact))
    assert props["input_scale"] == repr(INPUT_SCALE) and props["input_dtype"] == "float32"
    assert props["seed"] == "5"


def test_the_artifact_path_does_not_leak_into_the_model(
    tmp_path: Path, small_artifact: Path
) -> None:
    copy = tmp_path / "elsewhere" / "renamed.npz"
    copy.parent.mkdir()
    copy.write_bytes(small_artifact.read_bytes())
    first, second = (
        model_bytes(export_artifact(p, ExportOptions())) for p in (small_artifact, copy)
    )
    assert first == second
