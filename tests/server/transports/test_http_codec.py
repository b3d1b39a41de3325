"""server.transports.http_codec as plain functions: bodies in, data plane requests out, and
responses back, JSON and binary, with no network."""

from __future__ import annotations

import gzip
import json
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scratchnet import datatypes
from scratchnet.errors import InvalidArgument, TooLarge
from server.dataplane import InferResponse, RequestedOutput
from server.tensors import decode
from server.transports import http_codec
from tests.server.conftest import plane_with


def body(document: dict[str, Any], *chunks: bytes) -> tuple[bytes, str | None]:
    """A request body and its Inference-Header-Content-Length (None without binary data)."""
    head = json.dumps(document).encode()
    return head + b"".join(chunks), str(len(head)) if chunks else None


def test_json_inputs_flat_or_nested_become_typed_values() -> None:
    data, length = body(
        {
            "id": "r1",
            "inputs": [
                {"name": "a", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2.5], [3, 4]]},
                {"name": "b", "shape": [3], "datatype": "UINT8", "data": [0, 7, 255]},
            ],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}, {"name": "z"}],
        }
    )
    request, binary = http_codec.infer_request(data, length, "m", "2")
    assert (request.model_name, request.model_version, request.id, binary) == (
        "m",
        "2",
        "r1",
        False,
    )
    a, b = request.inputs
    assert (a.name, a.datatype, a.shape, a.typed_field) == ("a", "FP32", (2, 2), "data")
    assert np.asarray(a.typed).tolist() == [1, 2.5, 3, 4]
    # Any nesting is flattened, as Triton reads it: the data plane counts the values.
    ragged, length = body(one(shape=[3], data=[[1], [2, [3]]]))
    assert list(http_codec.infer_request(ragged, length, "m")[0].inputs[0].typed or []) == [1, 2, 3]
    assert np.asarray(b.typed).tolist() == [0, 7, 255] and b.raw is None
    assert request.outputs == [RequestedOutput("y", {"binary_data": True}), RequestedOutput("z")]


def test_bytes_inputs_are_json_strings_sent_on_as_utf8() -> None:
    data, length = body({"inputs": [{"name": "s", "shape": [2], "datatype": "BYTES",
                                     "data": ["héllo", ""]}]})  # fmt: skip
    (tensor,) = http_codec.infer_request(data, length, "m")[0].inputs
    array = decode(tensor, datatypes.DATATYPES[-1], "input 's'")
    assert array.tolist() == ["héllo".encode(), b""]
    bad, length = body({"inputs": [{"name": "s", "shape": [1], "datatype": "BYTES", "data": [1]}]})
    with pytest.raises(InvalidArgument, match="element 0 is a JSON number, expected a string"):
        http_codec.infer_request(bad, length, "m")


def test_bytes_keep_trailing_nuls_and_text_that_is_not_unicode_is_refused() -> None:
    # numpy's strings drop trailing NULs; values must travel as sent.
    data, length = body({"inputs": [{"name": "s", "shape": [2], "datatype": "BYTES",
                                     "data": ["xy\u0000\u0000", "\u0000"]}]})  # fmt: skip
    (tensor,) = http_codec.infer_request(data, length, "m")[0].inputs
    assert list(tensor.typed or []) == [b"xy\x00\x00", b"\x00"]
    surrogate = (
        b'{"inputs": [{"name": "s", "shape": [2], "datatype": "BYTES", "data": ["a", "\\ud800"]}]}'
    )
    with pytest.raises(InvalidArgument, match=r"'data' element 1 is not Unicode text"):
        http_codec.infer_request(surrogate, None, "m")


def test_a_long_string_among_numbers_is_refused_by_its_type_without_a_copy() -> None:
    # As numpy strings, 20,000 characters beside 100,000 empty ones would take 8 GB.
    data, length = body(one(data=["x" * 20_000] + [""] * 100_000))
    with pytest.raises(InvalidArgument, match="element 0 is a JSON string, expected a number"):
        http_codec.infer_request(data, length, "m")


def test_json_nested_past_the_parsers_depth_is_refused_as_json() -> None:
    deep = b'{"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": '
    deep += b"[" * 100_000 + b"]" * 100_000 + b"}]}"
    with pytest.raises(InvalidArgument, match=r"is not valid JSON \(arrays or objects nested "):
        http_codec.infer_request(deep, None, "m")
    with pytest.raises(InvalidArgument, match="repository index: the body is not valid JSON"):
        http_codec.index_ready(b"[" * 100_000)


def test_a_json_integer_past_pythons_digit_limit_is_refused_as_json() -> None:
    # json.loads raises a plain ValueError for it, which was a 500.
    digits = sys.get_int_max_str_digits() + 1
    huge = b'{"parameters": {"priority": ' + b"9" * digits + b'}, "inputs": []}'
    with pytest.raises(InvalidArgument, match=r"is not valid JSON \(an integer of more than "):
        http_codec.infer_request(huge, None, "m")
    with pytest.raises(InvalidArgument, match="repository index: the body is not valid JSON"):
        http_codec.index_ready(b'{"ready": ' + b"1" * digits + b"}")


def test_output_parameters_reach_the_data_plane() -> None:
    data, length = body(
        {"inputs": [], "outputs": [{"name": "p", "parameters": {"classification": 3}}]}
    )
    request, _ = http_codec.infer_request(data, length, "m")
    assert request.outputs == [RequestedOutput("p", {"classification": 3})]


def test_bytes_outputs_are_strings_in_json_and_length_prefixed_in_binary() -> None:
    strings = np.array([b"0.9:7", b"0.1:1"], dtype=object)
    document, _ = split(http_codec.infer_response(response(top=strings), [], False))
    assert document["outputs"][0]["data"] == ["0.9:7", "0.1:1"]
    _, tail = split(http_codec.infer_response(response(top=strings), [], True))
    assert tail == b"\x05\x00\x00\x000.9:7\x05\x00\x00\x000.1:1"


def test_binary_inputs_take_consecutive_slices_of_the_tail_without_a_copy() -> None:
    first, second = np.arange(4, dtype=np.float32).tobytes(), b"\x01\x02\x03"
    data, length = body(
        {
            "inputs": [
                {"name": "a", "shape": [4], "datatype": "FP32", "parameters": sized(16)},
                {"name": "j", "shape": [1], "datatype": "INT64", "data": [5]},
                {"name": "b", "shape": [3], "datatype": "UINT8", "parameters": sized(3)},
            ],
            "parameters": {"binary_data_output": True},
        },
        first,
        second,
    )  # fmt: skip
    request, binary = http_codec.infer_request(data, length, "m")
    assert binary is True
    a, j, b = request.inputs
    assert isinstance(a.raw, memoryview) and bytes(a.raw) == first
    assert bytes(b.raw or b"") == second
    assert j.raw is None and np.asarray(j.typed).tolist() == [5]


def one(**fields: Any) -> dict[str, Any]:
    """A request with one input `a` FP32 [1] and `fields` added to it."""
    return {"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", **fields}]}


def sized(size: int) -> dict[str, Any]:
    return {"binary_data_size": size}


@pytest.mark.parametrize(
    ("document", "chunks", "length", "message"),
    [
        (None, (), None, "is not valid JSON"),
        ([1], (), None, "is a JSON array, expected an object"),
        ({}, (), None, "has no 'inputs' array"),
        (one(), (), None, "no 'data' and no 'binary_data_size'"),
        (one(shape=[1.5], data=[1]), (), None, "'shape' is [1.5], expected an array of integers"),
        (one(datatype="UINT8", data=[1.5]), (), None, "element 0 is a JSON number, expected an "
         "integer for UINT8"),
        (one(datatype="INT32", data=[1, 2, 3, True]), (), None, "element 3 is a JSON boolean, "
         "expected an integer for INT32"),
        (one(data=[1.5, 2, 3, False]), (), None, "element 3 is a JSON boolean, expected a number"),
        (one(datatype="BOOL", data=[True, 1]), (), None, "element 1 is a JSON number, expected "
         "true or false for BOOL"),
        (one(datatype="BYTES", data=["a", True]), (), None, "element 1 is a JSON boolean, "
         "expected a string for BYTES"),
        (one(data=["x"]), (), None, "element 0 is a JSON string, expected a number for FP32"),
        (one(data=[None]), (), None, "element 0 is a JSON null, expected a number for FP32"),
        (one(data=[1], parameters=sized(4)), (b"1234",), "auto", "both 'data' and parameter"),
        (one(parameters=sized(4)), (), None, "needs binary data after the JSON, with its length "
         "in the Inference-Header-Content-Length header"),
        (one(parameters=sized(8)), (b"1234",), "auto", "asks for bytes 0 to 8 of the binary "
         "data, which has 4"),
        (one(parameters=sized(2)), (b"1234",), "auto", "4 bytes of binary data after the JSON, "
         "but its inputs' 'binary_data_size' add up to 2"),
        ({"inputs": []}, (b"12",), "999", "says 999 bytes of JSON, but the body has only"),
        ({"inputs": []}, (b"12",), "-1", "is '-1', expected the JSON's length in bytes"),
        ({"inputs": []}, (b"12",), "\u00b2", "is '\u00b2', expected the JSON's length in bytes"),
        ({"inputs": []}, (b"12",), "\u0663", "is '\u0663', expected the JSON's length in bytes"),
        ({"inputs": [], "parameters": {"binary_data_output": "yes"}}, (), None,
         "'binary_data_output' for model 'm' is \"yes\", expected true or false"),
        ({"inputs": [], "parameters": {"binary_data_output": None}}, (), None,
         "'binary_data_output' for model 'm' is null, expected true or false"),
        ({"inputs": [], "outputs": [{"name": "y", "parameters": {"shared_memory_region": "r"}}]},
         (), None, "needs Triton's shared-memory extension"),
        ({"inputs": [], "outputs": {"name": "y"}}, (), None, "'outputs' of the request for "
         "model 'm' is a JSON object, expected an array"),
    ],
)  # fmt: skip
def test_malformed_requests_are_named(
    document: Any, chunks: tuple[bytes, ...], length: str | None, message: str
) -> None:
    data = b"{not json" if document is None else json.dumps(document).encode() + b"".join(chunks)
    if length == "auto":
        length = str(len(json.dumps(document)))
    with pytest.raises(InvalidArgument) as raised:
        http_codec.infer_request(data, length, "m")
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def response(**outputs: Any) -> InferResponse:
    return InferResponse(
        "m", "3", "r9", {name: np.asarray(value) for name, value in outputs.items()}
    )


def split(reply: http_codec.Reply) -> tuple[dict[str, Any], bytes]:
    length = reply.headers.get("inference-header-content-length")
    if length is None:
        return json.loads(reply.body), b""
    return json.loads(reply.body[: int(length)]), reply.body[int(length) :]


def test_json_outputs_read_back_as_the_same_float32() -> None:
    scores = np.array([[0.1, 1 / 3, 1e-30]], dtype=np.float32)
    reply = http_codec.infer_response(response(scores=scores), [], False)
    document, tail = split(reply)
    assert reply.headers["content-type"] == "application/json" and tail == b""
    (output,) = document["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("scores", "FP32", [1, 3])
    assert np.array_equal(np.asarray(output["data"], dtype=np.float32), scores.ravel())
    assert (document["model_name"], document["model_version"], document["id"]) == ("m", "3", "r9")


def test_binary_outputs_follow_the_json_in_order_and_others_stay_json() -> None:
    label = np.array([7, 2], dtype=np.int64)
    scores = np.arange(4, dtype=np.float32).reshape(2, 2)
    requested = [RequestedOutput("scores"), RequestedOutput("label", {"binary_data": False})]
    reply = http_codec.infer_response(response(scores=scores, label=label), requested, True)
    document, tail = split(reply)
    assert reply.headers["content-type"] == "application/octet-stream"
    first, second = document["outputs"]
    assert first["parameters"] == {"binary_data_size": 16} and "data" not in first
    assert tail == scores.tobytes()
    assert second["data"] == [7, 2] and "parameters" not in second


def test_binary_data_output_with_no_outputs_named_makes_every_output_binary() -> None:
    reply = http_codec.infer_response(response(label=np.array([1], dtype=np.int64)), [], True)
    document, tail = split(reply)
    assert document["outputs"][0]["parameters"] == {"binary_data_size": 8}
    assert np.frombuffer(tail, dtype="<i8").tolist() == [1]


def test_compressed_bodies_are_inflated_within_the_limit() -> None:
    raw = b'{"inputs": []}' * 10
    assert http_codec.decompress(gzip.compress(raw), "gzip", 1000) == raw
    assert http_codec.decompress(zlib.compress(raw), "deflate", 1000) == raw
    assert http_codec.decompress(raw, None, 1000) == raw
    with pytest.raises(TooLarge, match="over 100 bytes once decompressed"):
        http_codec.decompress(gzip.compress(raw), "gzip", 100)
    with pytest.raises(InvalidArgument, match="unsupported Content-Encoding 'br'"):
        http_codec.decompress(raw, "br", 1000)
    with pytest.raises(InvalidArgument, match="not valid gzip data"):
        http_codec.decompress(raw, "gzip", 1000)


def test_model_metadata_is_the_grpc_metadata_as_json(model_onnx: Path) -> None:
    plane = plane_with(model_onnx)
    model = plane.model("scratchnet")
    document = json.loads(
        http_codec.model_metadata(model, [model.version], plane.metadata(model)).body
    )
    assert document["name"] == "scratchnet" and document["versions"] == [model.version]
    assert document["platform"] == "onnxruntime_onnx"
    assert document["inputs"] == [{"name": "images", "datatype": "FP32", "shape": [-1, 28, 28]}]
    assert [o["name"] for o in document["outputs"]] == ["scores", "label", "probabilities"]
    assert json.loads(document["properties"]["class_labels"]) == [str(i) for i in range(10)]


def test_errors_are_one_json_object() -> None:
    reply = http_codec.error_reply(404, "Request for unknown model: 'x' is not found")
    assert reply.status == 404
    assert json.loads(reply.body) == {"error": "Request for unknown model: 'x' is not found"}


def test_json_integers_of_any_size_are_range_checked_exactly() -> None:
    uint64 = datatypes.by_name("UINT64")
    assert uint64 is not None

    def decoded(datatype: str, values: list[Any]) -> list[int]:
        document = {"inputs": [{"name": "x", "shape": [len(values)], "datatype": datatype,
                                "data": values}]}  # fmt: skip
        request, _ = http_codec.infer_request(*body(document), "m", "")
        known = datatypes.by_name(datatype)
        assert known is not None
        return decode(request.inputs[0], known, "x").tolist()  # type: ignore[no-any-return]

    # numpy alone would read these as float64 and round the second to 2**64.
    assert decoded("UINT64", [1, 2**64 - 1]) == [1, 2**64 - 1]
    for datatype, values, message in [
        ("UINT64", [-1, 5], r"data\[0\] is -1, outside the UINT64 range"),
        ("UINT16", [3, -5], r"data\[1\] is -5, outside the UINT16 range"),
        ("INT64", [1, 2**70], rf"data\[1\] is {2**70}, outside the INT64 range"),
        ("INT32", [True, False], "'data' element 0 is a JSON boolean, expected an integer"),
    ]:
        with pytest.raises(InvalidArgument, match=message):
            decoded(datatype, values)
