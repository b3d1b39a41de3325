"""`--triton-repo`: the repository layout, and config.pbtxt checked against the model's signature.

config.pbtxt is parsed with Triton's own ModelConfig message (tritonclient ships it) in a separate
process: tritonclient registers the protobuf package `inference`, which must not meet our generated
Open Inference Protocol code in the pytest process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import onnx
import onnxruntime as ort
import pytest

from export.__main__ import main
from tests.conftest import run_module

_PARSE_CONFIG = """
import json, sys
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2
config = text_format.Parse(open(sys.argv[1]).read(), model_config_pb2.ModelConfig())
print(json.dumps(json_format.MessageToDict(config, preserving_proto_field_name=True)))
"""
# onnxruntime's type strings and Triton's names for the same element types.
_TRITON_TYPES = {
    "tensor(float)": "TYPE_FP32",
    "tensor(uint8)": "TYPE_UINT8",
    "tensor(int64)": "TYPE_INT64",
}


def _parse_config(path: Path) -> dict[str, Any]:
    """config.pbtxt as a dict, through Triton's strict text-format parser."""
    result = subprocess.run(
        [sys.executable, "-c", _PARSE_CONFIG, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def _expected_tensor(arg: Any) -> dict[str, Any]:
    """How Triton should describe an onnxruntime input or output: no batch dimension."""
    assert arg.shape[0] == "batch"
    tensor: dict[str, Any] = {"name": arg.name, "data_type": _TRITON_TYPES[arg.type]}
    if len(arg.shape) > 1:
        tensor["dims"] = [str(size) for size in arg.shape[1:]]
    else:
        # [batch] alone is [batch, 1] to Triton, reshaped to [batch] for the model.
        tensor["dims"] = ["1"]
        tensor["reshape"] = {}
    return tensor


@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_repository_matches_the_model_signature(
    article_artifact: Path, tmp_path: Path, dtype: str
) -> None:
    repo = tmp_path / "repo"
    result = run_module(
        "export",
        article_artifact,
        "--triton-repo",
        repo,
        "--input-dtype",
        dtype,
        "--model-version",
        "3",
        "--max-batch",
        "256",
        "-o",
        tmp_path / "model.onnx",
    )
    assert f"wrote Triton model repository {repo / 'scratchnet'} (version 3)" in result.stdout
    folder = repo / "scratchnet"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == [
        "3",
        "3/model.onnx",
        "config.pbtxt",
        "labels.txt",
    ]
    model_file = folder / "3" / "model.onnx"
    assert model_file.read_bytes() == (tmp_path / "model.onnx").read_bytes()
    assert onnx.load(model_file).model_version == 3

    session = ort.InferenceSession(model_file, providers=["CPUExecutionProvider"])
    config = _parse_config(folder / "config.pbtxt")
    outputs = config.pop("output")
    assert config == {
        "name": "scratchnet",
        "platform": "onnxruntime_onnx",
        "max_batch_size": 256,
        "input": [_expected_tensor(arg) for arg in session.get_inputs()],
        "dynamic_batching": {},
    }
    expected_outputs = [_expected_tensor(arg) for arg in session.get_outputs()]
    for tensor in outputs:
        if tensor["name"] in ("scores", "probabilities"):
            assert tensor.pop("label_filename") == "labels.txt"
    assert outputs == expected_outputs

    labels = (folder / "labels.txt").read_text().splitlines()
    metadata = session.get_modelmeta().custom_metadata_map
    assert labels == json.loads(metadata["class_labels"]) == [str(c) for c in range(10)]


def test_repository_alone_writes_no_model_file(
    small_artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main([str(small_artifact), "--triton-repo", "repo", "--model-name", "small"])
    assert exited.value.code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo", "small.npz"]
    config = _parse_config(tmp_path / "repo" / "small" / "config.pbtxt")
    assert config["name"] == "small" and config["max_batch_size"] == 1024
    assert config["input"] == [{"name": "images", "data_type": "TYPE_FP32", "dims": ["5", "7"]}]
    assert (tmp_path / "repo" / "small" / "labels.txt").read_text() == "cat\ndog\nemu\n"
    assert onnx.load(tmp_path / "repo" / "small" / "1" / "model.onnx").graph.name == "small"
