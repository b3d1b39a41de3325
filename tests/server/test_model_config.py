"""server.model_config in process: config.pbtxt mistakes name their field and line, fields this
server does not act on are listed, and a config refines what clients see of the ONNX file."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format

from scratchnet.errors import ModelError
from server.model_config import ModelConfig, ignored_fields, layout, read_config
from server.signature import read_signature
from tests.server.onnx_models import build_classifier, random_classifier


def _config(text: str) -> ModelConfig:
    return text_format.Parse(text, ModelConfig())


def test_a_field_outside_triton_schema_is_refused_with_its_name_and_line(tmp_path: Path) -> None:
    path = tmp_path / "config.pbtxt"
    path.write_text('name: "m"\nmax_batch_size: 8\ninstance_groups [ { count: 1 } ]\n')
    with pytest.raises(ModelError) as raised:
        read_config(path)
    assert str(raised.value) == (
        f"{path}: line 3, column 1: unknown field 'instance_groups', which is not in Triton's "
        "model configuration schema"
    )


def test_fields_of_triton_schema_not_acted_on_are_listed() -> None:
    config = _config(
        'name: "m" max_batch_size: 4 instance_group [ { count: 2 kind: KIND_CPU } ]\n'
        "optimization { graph { level: 1 } }\n"
        'input [ { name: "x" data_type: TYPE_FP32 format: FORMAT_NCHW dims: [ 3 ] } ]\n'
        "dynamic_batching { max_queue_delay_microseconds: 100 preserve_ordering: true }\n"
    )
    assert ignored_fields(config) == [
        "dynamic_batching.preserve_ordering",
        "input.format",
        "instance_group",
        "optimization",
    ]


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    """A classifier of images [N, 3, 4]."""
    weights, biases = random_classifier(2, 3, 4)
    return build_classifier(tmp_path / "m.onnx", weights, biases)


def test_without_a_config_the_onnx_signature_is_what_clients_see(model_file: Path) -> None:
    signature = read_signature(model_file)
    shaped = layout(signature, None, 16, "model m")
    assert shaped.inputs == signature.inputs and shaped.max_batch == 16


def test_dims_exclude_the_batch_and_a_reshape_maps_them(model_file: Path) -> None:
    signature = read_signature(model_file)
    config = _config(
        "max_batch_size: 8\n"
        'input [ { name: "images" data_type: TYPE_FP32 dims: [ 12 ] reshape { shape: [3, 4] } } ]\n'
        'output [ { name: "label" data_type: TYPE_INT64 dims: [ 1 ] reshape { shape: [ ] } } ]\n'
    )
    shaped = layout(signature, config, 16, "model m")
    (images,) = shaped.inputs
    assert (images.dims, images.model_dims) == ((-1, 12), (-1, 3, 4))
    label = next(spec for spec in shaped.outputs if spec.name == "label")
    assert (label.dims, label.model_dims) == ((-1, 1), (-1,))
    assert (shaped.max_batch, shaped.max_batch_origin) == (8, "the model's max_batch_size")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'input [ { name: "pixels" dims: [ 3, 4 ] } ]',
            "config input 'pixels' is not one of the model's inputs images",
        ),
        (
            'input [ { name: "images" data_type: TYPE_UINT8 dims: [ 3, 4 ] } ]',
            "has data_type TYPE_UINT8, but the model's is TYPE_FP32",
        ),
        (
            'input [ { name: "images" data_type: TYPE_FP32 dims: [ 4, 3 ] } ]',
            "dims give shape [-1,4,3]",
        ),
        (
            'input [ { name: "images" data_type: TYPE_FP32 dims: [ 13 ]'
            " reshape { shape: [ 3, 4 ] } } ]",
            "hold a different number of elements",
        ),
        # As Triton's ValidateIOShape: a listed tensor gives its type and dims.
        (
            'input [ { name: "images" dims: [ 3, 4 ] } ]',
            "config input 'images' must specify 'data_type'",
        ),
        (
            'output [ { name: "scores" data_type: TYPE_FP32 } ]',
            "config output 'scores' must specify 'dims'",
        ),
        ('platform: "tensorflow_savedmodel"', "platform/backend 'tensorflow_savedmodel'"),
    ],
)
def test_a_config_that_disagrees_with_the_model_is_refused(
    model_file: Path, text: str, message: str
) -> None:
    with pytest.raises(ModelError, match=message.replace("[", r"\[").replace("]", r"\]")):
        layout(read_signature(model_file), _config("max_batch_size: 8\n" + text), 16, "model m")


def test_a_config_without_tensors_or_a_batch_size_leaves_the_batch_to_the_server(
    model_file: Path,
) -> None:
    # As no config does, and as Triton's onnxruntime backend fills max_batch_size in.
    signature = read_signature(model_file)
    partial = layout(signature, _config("version_policy: { latest: { num_versions: 1 } }"), 16, "m")
    assert (partial.max_batch, partial.max_batch_origin) == (
        16,
        "the server's --max-batch (the config gives no max_batch_size)",
    )
    # Tensors listed with max_batch_size 0: no batch dimension, as written.
    listed = _config(
        'input [ { name: "images" data_type: TYPE_FP32 dims: [ -1, 3, 4 ] } ]\n'
        'output [ { name: "scores" data_type: TYPE_FP32 dims: [ -1, 2 ] } ]'
    )
    assert layout(signature, listed, 16, "m").max_batch == 0


def test_an_empty_reshape_without_a_batch_dimension_is_refused(model_file: Path) -> None:
    text = (
        'output [ { name: "label" data_type: TYPE_INT64 dims: [ 1 ] reshape { shape: [ ] } } ]\n'
        'input [ { name: "images" data_type: TYPE_FP32 dims: [ -1, 3, 4 ] } ]'
    )
    with pytest.raises(ModelError, match="an empty reshape without a batch dimension"):
        layout(read_signature(model_file), _config(text), 16, "model m")


def test_a_negative_batch_size_or_batching_without_a_batch_dimension_is_refused(
    model_file: Path, tmp_path: Path
) -> None:
    signature = read_signature(model_file)
    with pytest.raises(ModelError, match="max_batch_size is -1, expected 0 or more"):
        layout(signature, _config("max_batch_size: -1"), 16, "model m")
    fixed = tmp_path / "fixed.onnx"
    weights, biases = random_classifier(2, 3, 4)
    build_classifier(fixed, weights, biases, batch=1)
    with pytest.raises(ModelError, match="max_batch_size 8 needs a dynamic first dimension"):
        layout(read_signature(fixed), _config("max_batch_size: 8"), 16, "model m")
