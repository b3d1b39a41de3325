"""server.tensors without a network: a request's data becomes an array only if it fits its shape."""

from __future__ import annotations

import numpy as np
import pytest

from scratchnet import datatypes
from scratchnet.errors import InvalidArgument
from server.tensors import InputTensor, decode, pack_strings

FP32 = datatypes.by_numpy(np.float32)
UINT8 = datatypes.by_numpy(np.uint8)


def test_raw_bytes_become_a_read_only_view_without_a_copy() -> None:
    data = np.arange(24, dtype=np.float32).tobytes()
    array = decode(InputTensor("x", "FP32", (2, 3, 4), raw=data), FP32, "t")
    assert np.shares_memory(array, np.frombuffer(data, np.uint8))
    assert not array.flags.writeable
    np.testing.assert_array_equal(array.ravel(), np.arange(24))


def test_a_byte_length_that_disagrees_with_the_shape_is_refused() -> None:
    data = np.arange(24, dtype=np.float32).tobytes()[:-1]
    with pytest.raises(InvalidArgument, match=r"^t: expected 96 bytes for shape \[2,3,4\] of FP32"):
        decode(InputTensor("x", "FP32", (2, 3, 4), raw=data), FP32, "t")


def test_raw_bool_bytes_must_be_0_or_1() -> None:
    # numpy takes any byte as True, but Not(2) is 253, an OK answer with a wrong result.
    boolean = datatypes.by_numpy(np.bool_)
    good = decode(InputTensor("x", "BOOL", (3,), raw=b"\x01\x00\x01"), boolean, "t")
    np.testing.assert_array_equal(good, [True, False, True])
    with pytest.raises(
        InvalidArgument, match=r"^t: BOOL bytes must be 0 or 1, found 2 at index 1$"
    ):
        decode(InputTensor("x", "BOOL", (3,), raw=b"\x01\x02\xff"), boolean, "t")


def test_bytes_elements_are_length_prefixed_and_must_fill_the_data_exactly() -> None:
    strings = datatypes.by_name("BYTES")
    assert strings is not None
    packed = pack_strings(np.array([b"ab", b"", "c"], dtype=object))
    assert packed == b"\x02\0\0\0ab\0\0\0\0\x01\0\0\0c"
    array = decode(InputTensor("x", "BYTES", (3,), raw=packed), strings, "t")
    assert array.tolist() == [b"ab", b"", b"c"]
    for data, shape in ((packed[:-1], (3,)), (packed, (2,)), (packed + b"\0", (3,))):
        with pytest.raises(InvalidArgument, match="length-prefixed BYTES elements"):
            decode(InputTensor("x", "BYTES", shape, raw=data), strings, "t")


class _Uncountable(list[float]):
    """Typed values that fail the test if anything converts them."""

    def __iter__(self):  # type: ignore[no-untyped-def]
        raise AssertionError("converted before the count was checked")


def test_typed_values_are_counted_before_anything_is_converted() -> None:
    values = _Uncountable([0.5] * 5)
    tensor = InputTensor("x", "FP32", (1, 2, 2), typed=values, typed_field="fp32_contents")
    with pytest.raises(InvalidArgument, match=r"expected 4 values for shape \[1,2,2\], got 5"):
        decode(tensor, FP32, "t")


def test_narrow_integers_out_of_range_are_refused_not_wrapped() -> None:
    tensor = InputTensor("x", "UINT8", (3,), typed=[0, 255, 256], typed_field="uint_contents")
    with pytest.raises(InvalidArgument, match=r"uint_contents\[2\] is 256, outside the UINT8"):
        decode(tensor, UINT8, "t")
    ok = InputTensor("x", "UINT8", (1, 3), typed=[0, 7, 255], typed_field="uint_contents")
    assert decode(ok, UINT8, "t").tolist() == [[0, 7, 255]]


def test_uint64_values_past_int64_are_taken_exactly_and_negatives_refused() -> None:
    # numpy reads [2**63, 1] as float64, which would lose digits or refuse them.
    uint64 = datatypes.by_numpy(np.uint64)
    values = [2**63, 1, 0, 2**64 - 1]
    tensor = InputTensor("x", "UINT64", (4,), typed=values, typed_field="uint64_contents")
    decoded = decode(tensor, uint64, "t")
    assert decoded.dtype == np.uint64 and decoded.tolist() == values
    below = InputTensor("x", "UINT64", (2,), typed=[-1, 2**63], typed_field="uint64_contents")
    with pytest.raises(InvalidArgument, match=r"uint64_contents\[0\] is -1, outside the UINT64"):
        decode(below, uint64, "t")


def test_a_json_integer_past_float64_is_refused_not_an_internal_error() -> None:
    # JSON integers have any size; Python cannot turn 10**400 into a float (OverflowError).
    for datatype in (FP32, datatypes.by_numpy(np.float16), datatypes.by_numpy(np.float64)):
        tensor = InputTensor("x", datatype.name, (2,), typed=[1, 10**400], typed_field="data")
        with pytest.raises(InvalidArgument, match=rf"data\[1\] is an integer of 401 digits, "
                           rf"outside the {datatype.name} range"):  # fmt: skip
            decode(tensor, datatype, "t")
    big = InputTensor("x", "FP32", (1,), typed=[10**39], typed_field="data")
    with pytest.raises(InvalidArgument, match=r"data\[0\] is 1e\+39, outside the FP32 range"):
        decode(big, FP32, "t")


def test_a_finite_value_too_large_for_its_float_type_is_named_not_called_infinity() -> None:
    fp16 = datatypes.by_numpy(np.float16)
    tensor = InputTensor("x", "FP16", (2,), typed=[1.5, 70000.0], typed_field="data")
    with pytest.raises(InvalidArgument, match=r"data\[1\] is 70000, outside the FP16 range "
                       r"\[-65504, 65504\]"):  # fmt: skip
        decode(tensor, fp16, "t")
    infinite = InputTensor("x", "FP32", (1,), typed=[float("inf")], typed_field="fp32_contents")
    assert np.isinf(decode(infinite, FP32, "t")).all()  # sent as such: the checks refuse it
