"""scratchnet.datatypes: one row per element type, each name checked against its owner."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from scratchnet import datatypes
from scratchnet.api.inference import open_inference_grpc_pb2 as oip
from scratchnet.api.v1 import classifier_pb2

OIP_SIZES = {
    "BOOL": 1, "UINT8": 1, "UINT16": 2, "UINT32": 4, "UINT64": 8, "INT8": 1, "INT16": 2,
    "INT32": 4, "INT64": 8, "FP16": 2, "FP32": 4, "FP64": 8, "BF16": 2, "BYTES": 0,
}  # fmt: skip


def test_the_table_has_every_protocol_datatype_with_its_size() -> None:
    assert {row.name: row.itemsize for row in datatypes.DATATYPES} == OIP_SIZES
    for row in datatypes.DATATYPES:
        assert datatypes.by_name(row.name) is row
        if row.numpy is not None and row.itemsize:
            assert row.numpy.itemsize == row.itemsize
            assert datatypes.by_numpy(row.numpy) is row


def test_every_column_matches_its_owner() -> None:
    onnx_names = {
        "FP32": "FLOAT", "FP64": "DOUBLE", "FP16": "FLOAT16", "BF16": "BFLOAT16", "BYTES": "STRING",
    }  # fmt: skip
    contents = {field.name for field in oip.InferTensorContents.DESCRIPTOR.fields}
    for row in datatypes.DATATYPES:
        assert onnx.TensorProto.DataType.Name(row.onnx) == onnx_names.get(row.name, row.name)
        assert datatypes.by_onnx(row.onnx) is row
        assert datatypes.by_triton(row.triton) is row
        assert row.contents_field is None or row.contents_field in contents
        if row.numpy is not None and row.numpy.kind != "O":
            # onnx's own mapping agrees with ours.
            assert onnx.helper.tensor_dtype_to_np_dtype(row.onnx) == row.numpy.newbyteorder("=")
    assert datatypes.by_triton("TYPE_STRING") is datatypes.by_name("BYTES")


def test_v1_has_exactly_its_two_pixel_types() -> None:
    assert datatypes.by_v1(classifier_pb2.DATA_TYPE_UINT8) is datatypes.by_name("UINT8")
    assert datatypes.by_v1(classifier_pb2.DATA_TYPE_FLOAT32) is datatypes.by_name("FP32")
    assert datatypes.by_v1(classifier_pb2.DATA_TYPE_UNSPECIFIED) is None
    assert {row.name for row in datatypes.DATATYPES if row.v1} == {"UINT8", "FP32"}


def test_lookups_by_numpy_take_either_byte_order_and_refuse_the_unknown() -> None:
    assert datatypes.by_numpy(np.dtype(">f4")).name == "FP32"
    assert datatypes.by_numpy(np.float64).name == "FP64"
    with pytest.raises(ValueError, match="no protocol datatype for numpy dtype complex64"):
        datatypes.by_numpy(np.complex64)
    assert datatypes.by_name("FLOAT") is None
    assert datatypes.names(datatypes.by_numpy(t) for t in (np.float32, np.uint8)) == "FP32 or UINT8"
