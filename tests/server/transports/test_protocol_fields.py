"""The request fields both Open Inference Protocol bindings read alike, against the real server
over gRPC and HTTP: the request parameters (`priority`, `timeout`, the sequence extension's and
the names reserved for Triton), model version strings, and a model name holding a slash, which
HTTP carries encoded in its path."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import grpc
import numpy as np
import pytest

from scratchnet.api.inference import open_inference_grpc_pb2 as pb
from scratchnet.api.inference.open_inference_grpc_pb2_grpc import GRPCInferenceServiceStub
from scratchnet.errors import clip
from tests.conftest import RunningServer

MODEL = "scratchnet"
TIMEOUT = 30.0
PRIORITY = "an unsigned integer (a priority level, 0 for the model's default)"
MICROSECONDS = "an unsigned integer (microseconds, 0 for none)"
SEQUENCE_ID = 'an unsigned integer or a string (the sequence\'s id, 0 or "" for none)'
FIRST = "a boolean (true on a sequence's first request)"
LAST = "a boolean (true on a sequence's last request)"
OTHER = "a boolean, a number or a string"


@pytest.fixture(scope="module")
def stub(http_server: RunningServer) -> Iterator[GRPCInferenceServiceStub]:
    with grpc.insecure_channel(http_server.target) as channel:
        yield GRPCInferenceServiceStub(channel)


def http_call(server: RunningServer, method: str, path: str, document: Any = None) -> Any:
    """(status, JSON answer or None) of one request on a fresh connection."""
    url = urlsplit(server.http_url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=TIMEOUT)
    try:
        body = None if document is None else json.dumps(document)
        connection.request(method, path, body=body)
        reply = connection.getresponse()
        data = reply.read()
        return reply.status, json.loads(data) if data else None
    finally:
        connection.close()


def images(server: RunningServer) -> Any:
    """One blank image, in the model's own shape (from its metadata)."""
    status, metadata = http_call(server, "GET", f"/v2/models/{MODEL}")
    assert status == 200
    shape = [1, *metadata["inputs"][0]["shape"][1:]]
    return np.zeros(shape, np.float32)


def grpc_request(
    pixels: Any, version: str = "", model: str = MODEL, **parameters: tuple[str, Any]
) -> pb.ModelInferRequest:
    """A ModelInferRequest; each parameter is (InferParameter field, value), "" for none set."""
    request = pb.ModelInferRequest(model_name=model, model_version=version)
    request.inputs.add(name="images", datatype="FP32", shape=pixels.shape)
    request.raw_input_contents.append(pixels.tobytes())
    for key, (field, value) in parameters.items():
        if field:
            setattr(request.parameters[key], field, value)
        else:
            request.parameters[key].SetInParent()
    return request


def json_request(pixels: Any, **parameters: Any) -> dict[str, Any]:
    tensor = {"name": "images", "shape": list(pixels.shape), "datatype": "FP32"}
    return {"parameters": parameters, "inputs": [{**tensor, "data": pixels.ravel().tolist()}]}


def grpc_error(call: Any, request: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=TIMEOUT)
    return caught.value.code(), caught.value.details()


@pytest.mark.parametrize(
    ("key", "field", "value", "found", "expected"),
    [
        ("priority", "string_param", "high", 'a string ("high")', PRIORITY),
        ("priority", "int64_param", -1, "a negative integer (-1)", PRIORITY),
        ("priority", "bool_param", True, "a boolean (true)", PRIORITY),
        ("timeout", "double_param", 1.5, "a floating-point number (1.5)", MICROSECONDS),
        ("timeout", "string_param", "1000", 'a string ("1000")', MICROSECONDS),
        ("timeout", "int64_param", -5, "a negative integer (-5)", MICROSECONDS),
        ("sequence_id", "bool_param", True, "a boolean (true)", SEQUENCE_ID),
        ("sequence_id", "double_param", 4.0, "a floating-point number (4.0)", SEQUENCE_ID),
        ("sequence_id", "int64_param", -7, "a negative integer (-7)", SEQUENCE_ID),
        ("sequence_start", "int64_param", 1, "an integer (1)", FIRST),
        ("sequence_start", "string_param", "true", 'a string ("true")', FIRST),
        ("sequence_end", "int64_param", 0, "an integer (0)", LAST),
        ("custom", "", None, "empty (no value set)", OTHER),
    ],
)
def test_request_parameters_of_the_wrong_type_are_refused_alike_over_grpc_and_http(
    http_server: RunningServer,
    stub: GRPCInferenceServiceStub,
    key: str,
    field: str,
    value: Any,
    found: str,
    expected: str,
) -> None:
    pixels = images(http_server)
    message = f"request parameter '{key}' for model '{MODEL}' is {found}, expected {expected}"
    request = grpc_request(pixels, **{key: (field, value)})
    assert grpc_error(stub.ModelInfer, request) == (grpc.StatusCode.INVALID_ARGUMENT, message)
    (answer,) = stub.ModelStreamInfer(iter([request]), timeout=TIMEOUT)
    assert answer.error_message == message
    infer = f"/v2/models/{MODEL}/infer"
    assert http_call(http_server, "POST", infer, json_request(pixels, **{key: value})) == (
        400,
        {"error": message},
    )


def test_names_starting_with_triton_are_reserved_over_both_apis(
    http_server: RunningServer, stub: GRPCInferenceServiceStub
) -> None:
    pixels = images(http_server)
    reserved = (
        f"request parameter 'triton_x' for model '{MODEL}': names starting with 'triton_' are "
        "reserved for Triton, expected another name"
    )
    empty_final = "triton_enable_empty_final_response"
    request = grpc_request(pixels, triton_x=("bool_param", True))
    assert grpc_error(stub.ModelInfer, request) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        f"{reserved} or '{empty_final}'",
    )
    # gRPC takes Triton's one option of that name, a boolean; HTTP takes none, as Triton.
    plain = stub.ModelInfer(grpc_request(pixels), timeout=TIMEOUT)
    option = grpc_request(pixels, **{empty_final: ("bool_param", True)})
    assert stub.ModelInfer(option, timeout=TIMEOUT).raw_output_contents == (
        plain.raw_output_contents
    )
    (answer,) = stub.ModelStreamInfer(iter([option]), timeout=TIMEOUT)
    assert answer.infer_response.raw_output_contents == plain.raw_output_contents
    wrong = grpc_request(pixels, **{empty_final: ("string_param", "yes")})
    assert grpc_error(stub.ModelInfer, wrong) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        f"request parameter '{empty_final}' for model '{MODEL}' is a string (\"yes\"), expected a "
        "boolean",
    )
    infer = f"/v2/models/{MODEL}/infer"
    assert http_call(http_server, "POST", infer, json_request(pixels, triton_x=True)) == (
        400,
        {"error": reserved},
    )
    status, answer = http_call(
        http_server, "POST", infer, json_request(pixels, **{empty_final: True})
    )
    assert (status, answer) == (400, {"error": reserved.replace("triton_x", empty_final)})


def test_what_only_one_binding_can_send_is_refused_too(
    http_server: RunningServer, stub: GRPCInferenceServiceStub
) -> None:
    pixels = images(http_server)
    unset = grpc_request(pixels, priority=("", None))
    assert grpc_error(stub.ModelInfer, unset) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        f"request parameter 'priority' for model '{MODEL}' is empty (no value set), expected "
        f"{PRIORITY}",
    )
    infer = f"/v2/models/{MODEL}/infer"
    for key, value, found, expected in [
        ("timeout", 2**64, f"an out-of-range integer ({2**64})", MICROSECONDS),
        ("timeout", None, "empty (no value set)", MICROSECONDS),
        ("timeout", [1], "a JSON array", MICROSECONDS),
        ("custom", {"a": 1}, "a JSON object", OTHER),
    ]:
        document = json_request(pixels, **{key: value})
        assert http_call(http_server, "POST", infer, document) == (
            400,
            {
                "error": f"request parameter '{key}' for model '{MODEL}' is {found}, expected "
                f"{expected}"
            },
        )


def test_valid_request_parameters_are_taken_and_change_nothing(
    http_server: RunningServer, stub: GRPCInferenceServiceStub
) -> None:
    pixels = images(http_server)
    plain = stub.ModelInfer(grpc_request(pixels), timeout=TIMEOUT)
    # tritonclient sends priority as uint64_param and timeout as int64_param; a timeout of
    # 1 µs is Triton's queue timeout, which this server has not: the answer comes all the same.
    # As Triton for a model without a sequence batcher, a sequence is not followed (no start
    # is needed) and changes nothing.
    for parameters in [
        {"priority": ("uint64_param", 2**64 - 1), "timeout": ("int64_param", 1)},
        {"priority": ("int64_param", 0), "timeout": ("uint64_param", 1000)},
        {"sequence_id": ("int64_param", 42), "sequence_start": ("bool_param", True)},
        {"sequence_id": ("string_param", "a-uuid"), "sequence_end": ("bool_param", True)},
        {"sequence_id": ("uint64_param", 2**64 - 1), "sequence_start": ("bool_param", False)},
        {"custom": ("double_param", 1.5), "other": ("string_param", "x")},
    ]:
        answer = stub.ModelInfer(grpc_request(pixels, **parameters), timeout=TIMEOUT)
        assert answer.raw_output_contents == plain.raw_output_contents
    infer = f"/v2/models/{MODEL}/infer"
    status, plain_json = http_call(http_server, "POST", infer, json_request(pixels))
    assert status == 200
    for valid in [
        {"priority": 3, "timeout": 1},
        {"sequence_id": 42, "sequence_start": True, "sequence_end": True},
        {"sequence_id": "a-uuid", "sequence_end": False},
        {"sequence_id": 0},
        {"custom": 1.5, "other": "x", "flag": True, "big": 2**70},
    ]:
        assert http_call(http_server, "POST", infer, json_request(pixels, **valid)) == (
            200,
            plain_json,
        )


def not_a_number(version: str) -> str:
    return (
        f"model '{MODEL}': version '{version}' is not a version number, expected an integer "
        ">= 1 (or none, for the newest)"
    )


@pytest.mark.parametrize("version", ["-1", "abc", "1.0", "+1"])
def test_a_version_that_is_not_a_number_is_invalid_on_every_call_over_both_apis(
    http_server: RunningServer, stub: GRPCInferenceServiceStub, version: str
) -> None:
    # Triton's gRPC server refuses "-1" (and "abc") as INVALID_ARGUMENT, ModelReady included;
    # its HTTP server does not route the path at all (404). -1 means the newest only inside
    # Triton, never in a request: the newest is an empty version.
    message = not_a_number(version)
    invalid = (grpc.StatusCode.INVALID_ARGUMENT, message)
    pixels = images(http_server)
    assert grpc_error(stub.ModelInfer, grpc_request(pixels, version)) == invalid
    assert grpc_error(stub.ModelReady, pb.ModelReadyRequest(name=MODEL, version=version)) == (
        invalid
    )
    metadata = pb.ModelMetadataRequest(name=MODEL, version=version)
    assert grpc_error(stub.ModelMetadata, metadata) == invalid
    versioned = f"/v2/models/{MODEL}/versions/{version}"
    for method, path, document in [
        ("POST", f"{versioned}/infer", json_request(pixels)),
        ("GET", f"{versioned}/ready", None),
        ("GET", versioned, None),
    ]:
        assert http_call(http_server, method, path, document) == (400, {"error": message})


@pytest.mark.parametrize("version", [str(2**63), "1" * 5000])
def test_a_version_past_a_signed_64_bit_integer_is_invalid_over_both_apis(
    http_server: RunningServer, stub: GRPCInferenceServiceStub, version: str
) -> None:
    # Triton reads a version with std::stol: one out of its range is INVALID_ARGUMENT. A
    # 5000-digit version was an internal error here (Python's int() takes 4300 digits at most).
    message = (
        f"model '{MODEL}': version '{clip(version)}' is out of range, expected an integer from 1 "
        f"to {2**63 - 1} (or none, for the newest)"
    )
    pixels = images(http_server)
    invalid = (grpc.StatusCode.INVALID_ARGUMENT, message)
    assert grpc_error(stub.ModelInfer, grpc_request(pixels, version)) == invalid
    ready = pb.ModelReadyRequest(name=MODEL, version=version)
    assert grpc_error(stub.ModelReady, ready) == invalid
    path = f"/v2/models/{MODEL}/versions/{version}/infer"
    assert http_call(http_server, "POST", path, json_request(pixels)) == (400, {"error": message})


def test_a_version_is_read_as_an_integer_alike_over_both_apis(
    http_server: RunningServer, stub: GRPCInferenceServiceStub
) -> None:
    pixels = images(http_server)
    assert stub.ModelInfer(grpc_request(pixels, "01"), timeout=TIMEOUT).model_version == "1"
    assert stub.ModelReady(pb.ModelReadyRequest(name=MODEL, version="01")).ready
    status, answer = http_call(
        http_server, "POST", f"/v2/models/{MODEL}/versions/01/infer", json_request(pixels)
    )
    assert (status, answer["model_version"]) == (200, "1")
    assert http_call(http_server, "GET", f"/v2/models/{MODEL}/versions/01/ready") == (200, None)
    # Version 0 is a number, of no version served: not found, and not ready (not an error).
    message = f"Request for unknown model: '{MODEL}' version 0 is not found"
    assert grpc_error(stub.ModelInfer, grpc_request(pixels, "0")) == (
        grpc.StatusCode.NOT_FOUND,
        message,
    )
    assert not stub.ModelReady(pb.ModelReadyRequest(name=MODEL, version="0")).ready
    assert http_call(
        http_server, "POST", f"/v2/models/{MODEL}/versions/0/infer", json_request(pixels)
    ) == (404, {"error": message})
    assert http_call(http_server, "GET", f"/v2/models/{MODEL}/versions/0/ready") == (
        400,
        {"error": "Model version not ready"},
    )


def test_an_encoded_slash_stays_in_its_path_segment(
    http_server: RunningServer, stub: GRPCInferenceServiceStub
) -> None:
    # uvicorn decodes %2F before routing: 'a/b' was "no endpoint", and 'scratchnet/ready' was
    # scratchnet's readiness.
    pixels = images(http_server)
    code, message = grpc_error(stub.ModelInfer, grpc_request(pixels, model="a/b"))
    assert (code, message) == (
        grpc.StatusCode.NOT_FOUND,
        "Request for unknown model: 'a/b' is not found",
    )
    assert http_call(http_server, "POST", "/v2/models/a%2Fb/infer", json_request(pixels)) == (
        404,
        {"error": message},
    )
    for path, name in [
        (f"/v2/models/{MODEL}%2Fready", f"{MODEL}/ready"),
        (f"/v2/models/{MODEL}%2fversions%2F1", f"{MODEL}/versions/1"),
        ("/v2/models/a%2Fb%252Fc/config", "a/b%2Fc"),
    ]:
        assert http_call(http_server, "GET", path) == (
            404,
            {"error": f"Request for unknown model: '{name}' is not found"},
        )
    assert http_call(http_server, "GET", "/v2/models/a%2Fb/ready") == (
        400,
        {"error": "Model version not ready"},
    )
    assert http_call(http_server, "GET", f"/v2/models/{MODEL}/versions/1%2F2/ready") == (
        400,
        {"error": not_a_number("1/2")},
    )
    assert http_call(http_server, "GET", "/v2/models/a%2Fb/nothing") == (
        404,
        {"error": "no endpoint GET /v2/models/a%2Fb/nothing on this server"},
    )
