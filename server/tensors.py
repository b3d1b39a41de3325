"""Tensors on the wire: the one datatype table and the checks both protocols apply to images.

A datatype has a numpy dtype (little-endian), a name in the Open Inference Protocol ("FP32"), a
value in scratchnet.v1's DataType enum (DATA_TYPE_UNSPECIFIED where v1 lacks it), a size in bytes
and the field of OIP's InferTensorContents that carries it typed. Raw bytes become arrays with
np.frombuffer, without a copy; every check raises InvalidArgument with a Triton-style message.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from scratchnet_api.v1 import classifier_pb2
from server.errors import InvalidArgument

if TYPE_CHECKING:
    from server.runtime import ModelRuntime

__all__ = [
    "DATATYPES",
    "Datatype",
    "array_from_bytes",
    "check_images_datatype",
    "check_images_shape",
    "datatype_from_name",
    "datatype_from_v1",
    "datatype_of",
    "format_shape",
    "images_from_bytes",
]


@dataclass(frozen=True)
class Datatype:
    """One element type under all its names."""

    name: str
    """The Open Inference Protocol name, e.g. "FP32"."""
    numpy: np.dtype[Any] | None
    """Little-endian numpy dtype; None for BYTES (variable-length strings)."""
    itemsize: int
    """Bytes per element on the wire; 0 for BYTES."""
    v1: classifier_pb2.DataType
    """The scratchnet.v1 DataType value; DATA_TYPE_UNSPECIFIED (0) if v1 has none."""
    contents_field: str | None
    """The OIP InferTensorContents field holding this type typed; None if only raw bytes can."""

    def __str__(self) -> str:
        return self.name


def _datatype(
    name: str, numpy: str | None, v1: classifier_pb2.DataType, contents_field: str | None
) -> Datatype:
    dtype = np.dtype(numpy) if numpy else None
    return Datatype(name, dtype, dtype.itemsize if dtype else 0, v1, contents_field)


_UNSPECIFIED = classifier_pb2.DATA_TYPE_UNSPECIFIED
DATATYPES: tuple[Datatype, ...] = (
    _datatype("BOOL", "?", _UNSPECIFIED, "bool_contents"),
    _datatype("UINT8", "u1", classifier_pb2.DATA_TYPE_UINT8, "uint_contents"),
    _datatype("UINT16", "<u2", _UNSPECIFIED, "uint_contents"),
    _datatype("UINT32", "<u4", _UNSPECIFIED, "uint_contents"),
    _datatype("UINT64", "<u8", _UNSPECIFIED, "uint64_contents"),
    _datatype("INT8", "i1", _UNSPECIFIED, "int_contents"),
    _datatype("INT16", "<i2", _UNSPECIFIED, "int_contents"),
    _datatype("INT32", "<i4", _UNSPECIFIED, "int_contents"),
    _datatype("INT64", "<i8", _UNSPECIFIED, "int64_contents"),
    _datatype("FP16", "<f2", _UNSPECIFIED, None),
    _datatype("FP32", "<f4", classifier_pb2.DATA_TYPE_FLOAT32, "fp32_contents"),
    _datatype("FP64", "<f8", _UNSPECIFIED, "fp64_contents"),
    _datatype("BYTES", None, _UNSPECIFIED, "bytes_contents"),
)
_BY_NAME = {datatype.name: datatype for datatype in DATATYPES}
_BY_V1: dict[int, Datatype] = {
    datatype.v1: datatype for datatype in DATATYPES if datatype.v1 != _UNSPECIFIED
}
_BY_NUMPY = {datatype.numpy: datatype for datatype in DATATYPES if datatype.numpy is not None}


def datatype_from_name(name: str, what: str) -> Datatype:
    """The datatype with this OIP name ("FP32"); InvalidArgument naming `what` if unknown."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise InvalidArgument(
            f"{what}: unknown datatype {name!r}, expected one of {', '.join(_BY_NAME)}"
        ) from None


def datatype_from_v1(value: int, what: str) -> Datatype:
    """The datatype of a scratchnet.v1 DataType value; InvalidArgument if unset or unknown."""
    try:
        return _BY_V1[value]
    except KeyError:
        known = classifier_pb2.DataType.values()
        shown = classifier_pb2.DataType.Name(value) if value in known else f"value {value}"
        expected = " or ".join(classifier_pb2.DataType.Name(v) for v in _BY_V1)
        raise InvalidArgument(f"{what}: unsupported dtype {shown}, expected {expected}") from None


def datatype_of(dtype: np.dtype[Any] | type[np.generic]) -> Datatype:
    """The datatype of a numpy dtype (native or little-endian); ValueError if there is none."""
    try:
        return _BY_NUMPY[np.dtype(dtype).newbyteorder("<")]
    except KeyError:
        raise ValueError(f"no protocol datatype for numpy dtype {np.dtype(dtype)}") from None


def format_shape(shape: Sequence[int]) -> str:
    """A shape the way Triton prints it: [-1,28,28]."""
    return "[" + ",".join(str(int(dim)) for dim in shape) + "]"


def array_from_bytes(
    data: bytes, datatype: Datatype, shape: Sequence[int], what: str
) -> NDArray[Any]:
    """View raw little-endian bytes as an array of `shape`, without copying.

    The array is read-only (it shares the message's memory). InvalidArgument, naming `what`, if a
    dimension is negative, the datatype has no fixed size or the byte length is not
    product(shape) · itemsize.
    """
    if datatype.numpy is None:
        raise InvalidArgument(f"{what}: datatype {datatype} cannot be sent as a raw tensor")
    if any(dim < 0 for dim in shape):
        raise InvalidArgument(f"{what}: shape {format_shape(shape)} has a negative dimension")
    expected = math.prod(shape) * datatype.itemsize
    if len(data) != expected:
        raise InvalidArgument(
            f"{what}: expected {expected} bytes for shape {format_shape(shape)} of {datatype} "
            f"({datatype.itemsize} per element), got {len(data)}"
        )
    return np.frombuffer(data, dtype=datatype.numpy).reshape(tuple(shape))


def check_images_datatype(datatype: Datatype, runtime: ModelRuntime) -> None:
    """InvalidArgument unless the model accepts images of this datatype."""
    if datatype.numpy not in runtime.accepted_dtypes:
        expected = " or ".join(datatype_of(dtype).name for dtype in runtime.accepted_dtypes)
        raise InvalidArgument(
            f"{runtime.input_description}: expected datatype {expected}, got {datatype}"
        )


def check_images_shape(shape: Sequence[int], runtime: ModelRuntime, max_batch: int) -> None:
    """InvalidArgument unless `shape` is [N, H, W] with the model's H, W and 1 ≤ N ≤ max_batch."""
    what = runtime.input_description
    if len(shape) != 3 or tuple(shape[1:]) != (runtime.height, runtime.width) or shape[0] < 0:
        raise InvalidArgument(
            f"{what}: expected shape {format_shape(runtime.input_shape)}, got {format_shape(shape)}"
        )
    if shape[0] == 0:
        raise InvalidArgument(
            f"{what}: the batch is empty (shape {format_shape(shape)}), expected at least one image"
        )
    if shape[0] > max_batch:
        raise InvalidArgument(
            f"{what}: batch size must be <= {max_batch} (the server's --max-batch), got {shape[0]}"
        )


def _check_finite(images: NDArray[Any], runtime: ModelRuntime) -> None:
    # One float64 sum is cheaper than an elementwise mask and is finite iff every pixel is
    # (float64 cannot overflow on float32 pixels); the mask only runs to name the culprit.
    if images.dtype.kind != "f" or np.isfinite(np.sum(images, dtype=np.float64)):
        return
    bad = ~np.isfinite(images).reshape(len(images), -1).all(axis=1)
    first = int(np.flatnonzero(bad)[0])
    raise InvalidArgument(
        f"{runtime.input_description}: pixels must be finite, found NaN or infinity in "
        f"{int(bad.sum())} image(s), the first at index {first}"
    )


def images_from_bytes(
    data: bytes, datatype: Datatype, shape: Sequence[int], runtime: ModelRuntime, max_batch: int
) -> NDArray[Any]:
    """Validate a raw image tensor and return it as a read-only [N, H, W] array (no copy)."""
    check_images_datatype(datatype, runtime)
    check_images_shape(shape, runtime, max_batch)
    images = array_from_bytes(data, datatype, shape, runtime.input_description)
    _check_finite(images, runtime)
    return images
