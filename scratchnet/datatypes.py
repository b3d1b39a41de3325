"""The one datatype table: each tensor element type under every name the project meets it by.

A row gives the Open Inference Protocol name ("FP32"), the numpy dtype (little-endian, as on the
wire), the bytes per element, the scratchnet.v1 DataType value (DATA_TYPE_UNSPECIFIED where v1 has
none), the ONNX TensorProto element type, the Triton model-configuration type and the field of the
protocol's InferTensorContents that carries it typed. Adding a datatype is adding a row here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from scratchnet.api.v1 import classifier_pb2

__all__ = [
    "DATATYPES",
    "Datatype",
    "by_name",
    "by_numpy",
    "by_onnx",
    "by_triton",
    "by_v1",
    "names",
]


@dataclass(frozen=True)
class Datatype:
    """One element type under all its names."""

    name: str
    """The Open Inference Protocol name, e.g. "FP32"."""
    numpy: np.dtype[Any] | None
    """Little-endian numpy dtype; object for BYTES; None where numpy has none (BF16)."""
    itemsize: int
    """Bytes per element on the wire; 0 for BYTES (each element carries its own length)."""
    v1: int
    """The scratchnet.v1 DataType value; DATA_TYPE_UNSPECIFIED (0) if v1 has none."""
    onnx: int
    """The ONNX TensorProto.DataType value (onnx.TensorProto.FLOAT is 1)."""
    triton: str
    """The type in Triton's model configuration (config.pbtxt), e.g. "TYPE_FP32"."""
    contents_field: str | None
    """The InferTensorContents field holding this type typed; None if only raw bytes can."""

    @property
    def is_float(self) -> bool:
        """True for the floating-point types (whose values can be NaN or infinite)."""
        return self.name in ("FP16", "BF16", "FP32", "FP64")

    def __str__(self) -> str:
        return self.name


_V1_UINT8 = classifier_pb2.DATA_TYPE_UINT8
_V1_FLOAT32 = classifier_pb2.DATA_TYPE_FLOAT32


def _row(
    name: str,
    numpy: str | None,
    onnx: int,
    contents: str | None,
    *,
    v1: int = classifier_pb2.DATA_TYPE_UNSPECIFIED,
    size: int = 0,
    triton: str = "",
) -> Datatype:
    dtype = np.dtype(numpy) if numpy else None
    itemsize = size or (dtype.itemsize if dtype is not None and dtype.kind != "O" else 0)
    return Datatype(name, dtype, itemsize, v1, onnx, triton or f"TYPE_{name}", contents)


DATATYPES: tuple[Datatype, ...] = (
    _row("BOOL", "?", 9, "bool_contents"),
    _row("UINT8", "u1", 2, "uint_contents", v1=_V1_UINT8),
    _row("UINT16", "<u2", 4, "uint_contents"),
    _row("UINT32", "<u4", 12, "uint_contents"),
    _row("UINT64", "<u8", 13, "uint64_contents"),
    _row("INT8", "i1", 3, "int_contents"),
    _row("INT16", "<i2", 5, "int_contents"),
    _row("INT32", "<i4", 6, "int_contents"),
    _row("INT64", "<i8", 7, "int64_contents"),
    _row("FP16", "<f2", 10, None),
    _row("FP32", "<f4", 1, "fp32_contents", v1=_V1_FLOAT32),
    _row("FP64", "<f8", 11, "fp64_contents"),
    _row("BF16", None, 16, None, size=2),
    # Triton's config.pbtxt calls it TYPE_STRING; every other type is TYPE_<protocol name>.
    _row("BYTES", "O", 8, "bytes_contents", triton="TYPE_STRING"),
)


def _index(key: str) -> dict[Any, Datatype]:
    table: dict[Any, Datatype] = {}
    for row in DATATYPES:
        table.setdefault(getattr(row, key), row)
    return table


_BY_NAME = _index("name")
_BY_ONNX = _index("onnx")
_BY_TRITON = _index("triton")
_BY_V1: dict[int, Datatype] = {row.v1: row for row in DATATYPES if row.v1}
_BY_NUMPY = {row.numpy: row for row in DATATYPES if row.numpy is not None}


def by_name(name: str) -> Datatype | None:
    """The datatype with this protocol name ("FP32"), or None."""
    return _BY_NAME.get(name)


def by_v1(value: int) -> Datatype | None:
    """The datatype of a scratchnet.v1 DataType value, or None if unset or unknown."""
    return _BY_V1.get(value)


def by_onnx(elem_type: int) -> Datatype | None:
    """The datatype of an ONNX TensorProto element type, or None if the protocol has none."""
    return _BY_ONNX.get(elem_type)


def by_triton(name: str) -> Datatype | None:
    """The datatype of a Triton config type ("TYPE_FP32"), or None."""
    return _BY_TRITON.get(name)


def by_numpy(dtype: np.dtype[Any] | type[np.generic] | str) -> Datatype:
    """The datatype of a numpy dtype (native or little-endian); ValueError if there is none."""
    if isinstance(dtype, np.dtype) and dtype in _BY_NUMPY:
        return _BY_NUMPY[dtype]  # the common case, without building a new dtype
    found = np.dtype(dtype)
    key = found if found.kind == "O" else found.newbyteorder("<")
    try:
        return _BY_NUMPY[key]
    except KeyError:
        raise ValueError(f"no protocol datatype for numpy dtype {found}") from None


def names(datatypes: Iterable[Datatype]) -> str:
    """'FP32 or UINT8', 'FP64, FP32 or UINT8': how messages list the datatypes a tensor takes."""
    listed = [datatype.name for datatype in datatypes]
    return " or ".join([", ".join(listed[:-1]), *listed[-1:]] if len(listed) > 2 else listed)
