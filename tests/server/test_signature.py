"""server.signature: what an ONNX file offers, read without running it."""

from __future__ import annotations

from pathlib import Path

import pytest

from scratchnet.errors import CLIP, ModelError
from server.signature import format_dims, read_signature
from tests.server.onnx_models import build_classifier, random_classifier


def test_inputs_outputs_producers_metadata_and_version(tmp_path: Path) -> None:
    weights, biases = random_classifier(4, 3, 5)
    path = build_classifier(
        tmp_path / "m.onnx", weights, biases, channel_axis=True, model_version=3,
        metadata={"note": "x"},
    )  # fmt: skip
    signature = read_signature(path)
    assert [str(spec) for spec in signature.inputs] == ["'images' FP32 [-1,1,3,5]"]
    outputs = [(s.name, s.datatype.name, s.dims, s.producer) for s in signature.outputs]
    assert outputs == [
        ("scores", "FP32", (-1, 4), "Gemm"),
        ("label", "INT64", (-1,), "ArgMax"),
        ("probabilities", "FP32", (-1, 4), "Softmax"),
    ]  # fmt: skip
    assert signature.metadata == {"note": "x"} and signature.model_version == 3
    assert signature.output("label") is signature.outputs[1] and signature.output("x") is None


def test_a_file_that_is_not_onnx_is_one_clear_model_error(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"\x08\x01\x12\xff\xff")
    with pytest.raises(ModelError, match="is not a readable ONNX file"):
        read_signature(tmp_path / "m.onnx")
    with pytest.raises(ModelError, match="not found"):
        read_signature(tmp_path / "missing.onnx")


def test_a_shape_prints_as_triton_prints_it_and_a_huge_one_is_cut_short() -> None:
    assert format_dims([-1, 28, 28]) == "[-1,28,28]"
    huge = format_dims([1] * 10_000)  # a client's shape, echoed in a one-line message
    assert len(huge) == CLIP and huge.startswith("[1,1,1,") and huge.endswith("…")
