"""server.tensors without a network: the datatype table, raw bytes to arrays, the image checks."""

from __future__ import annotations

import numpy as np
import pytest

from scratchnet_api.v1 import classifier_pb2
from server.errors import InvalidArgument
from server.runtime import ModelRuntime
from server.tensors import (
    DATATYPES,
    array_from_bytes,
    datatype_from_name,
    datatype_from_v1,
    datatype_of,
    images_from_bytes,
)
from tests.server.onnx_models import build_classifier, random_classifier

OIP_SIZES = {
    "BOOL": 1, "UINT8": 1, "UINT16": 2, "UINT32": 4, "UINT64": 8, "INT8": 1, "INT16": 2,
    "INT32": 4, "INT64": 8, "FP16": 2, "FP32": 4, "FP64": 8, "BYTES": 0,
}  # fmt: skip


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> ModelRuntime:
    weights, biases = random_classifier(3, 4, 5)
    path = build_classifier(tmp_path_factory.mktemp("m") / "m.onnx", weights, biases)
    return ModelRuntime(path, "tiny")


def test_the_table_has_every_oip_datatype_with_its_size_and_both_v1_types() -> None:
    assert {datatype.name: datatype.itemsize for datatype in DATATYPES} == OIP_SIZES
    for datatype in DATATYPES:
        assert datatype_from_name(datatype.name, "x") is datatype
        if datatype.numpy is not None:
            assert datatype.numpy.itemsize == datatype.itemsize
            assert datatype_of(datatype.numpy) is datatype
    assert datatype_from_v1(classifier_pb2.DATA_TYPE_UINT8, "x").numpy == np.uint8
    assert datatype_from_v1(classifier_pb2.DATA_TYPE_FLOAT32, "x").numpy == np.float32
    assert datatype_of(np.dtype(">f4")).name == "FP32"


def test_array_from_bytes_is_a_view_of_the_message_bytes() -> None:
    data = np.arange(24, dtype=np.float32).tobytes()
    array = array_from_bytes(data, datatype_from_name("FP32", "x"), [2, 3, 4], "x")
    assert np.shares_memory(array, np.frombuffer(data, np.uint8))
    assert not array.flags.writeable
    np.testing.assert_array_equal(array.ravel(), np.arange(24))
    with pytest.raises(InvalidArgument, match=r"^t: expected 96 bytes for shape \[2,3,4\] of FP32"):
        array_from_bytes(data[:-1], datatype_from_name("FP32", "x"), [2, 3, 4], "t")
    with pytest.raises(InvalidArgument, match="cannot be sent as a raw tensor"):
        array_from_bytes(b"", datatype_from_name("BYTES", "x"), [0], "t")


def test_images_from_bytes_checks_in_the_order_a_client_can_fix_them(
    runtime: ModelRuntime,
) -> None:
    fp64 = datatype_from_name("FP64", "x")
    uint8 = datatype_from_name("UINT8", "x")
    with pytest.raises(InvalidArgument, match="expected datatype FP32 or UINT8, got FP64"):
        images_from_bytes(b"", fp64, [9, 9], runtime, 4)
    with pytest.raises(InvalidArgument, match=r"expected shape \[-1,4,5\], got \[9,9\]"):
        images_from_bytes(b"", uint8, [9, 9], runtime, 4)
    with pytest.raises(InvalidArgument, match="must be <= 4"):
        images_from_bytes(b"", uint8, [5, 4, 5], runtime, 4)
    images = images_from_bytes(bytes(40), uint8, [2, 4, 5], runtime, 4)
    assert images.shape == (2, 4, 5) and images.dtype == np.uint8


def test_images_from_bytes_names_the_empty_batch_and_the_first_non_finite_image(
    runtime: ModelRuntime,
) -> None:
    fp32 = datatype_from_name("FP32", "x")
    with pytest.raises(
        InvalidArgument, match=r"^input 'images' of model 'tiny': the batch is empty"
    ):
        images_from_bytes(b"", fp32, [0, 4, 5], runtime, 2)
    images = np.zeros((2, 4, 5), np.float32)
    images[1, 3, 4] = np.inf
    with pytest.raises(InvalidArgument, match="in 1 image\\(s\\), the first at index 1"):
        images_from_bytes(images.tobytes(), fp32, images.shape, runtime, 2)
    # Huge but finite pixels must not look infinite to the fast check.
    huge = np.full((2, 4, 5), 3e38, np.float32)
    assert images_from_bytes(huge.tobytes(), fp32, huge.shape, runtime, 2).max() == huge.max()
