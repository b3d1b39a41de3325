"""Fuzzing the server through both gRPC APIs with hypothesis: random shapes, datatypes, byte
lengths, typed contents, huge names, NaN/inf/1e38 floats, several requests on a stream, and
garbage bytes as the whole message. Every answer must be a client-error code or a correct result
(the numpy forward pass on what was sent); never UNKNOWN or INTERNAL, never non-finite
probabilities with OK, never a hang (every call has a deadline), never a crash (the server still
answers afterwards, logs no traceback and exits 0).

The Open Inference Protocol requests go through TRANSPORTS, one sender per binding: gRPC, and
the REST binding (JSON, with Triton's binary extension for raw data), where each request is
sent as HTTP would carry it and the HTTP status read back as its gRPC code.

FUZZ_PROFILE fixes how many examples each test draws (derandomized, so that a run repeats the
last one); SCRATCHNET_FUZZ_PROFILE=long draws ten times as many, from a random seed.
"""

from __future__ import annotations

import http.client
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from scratchnet import datatypes
from scratchnet.api.inference import open_inference_grpc_pb2 as oip
from scratchnet.api.inference.open_inference_grpc_pb2_grpc import GRPCInferenceServiceStub
from scratchnet.api.v1 import classifier_pb2 as v1
from scratchnet.api.v1.classifier_pb2_grpc import ClassifierStub
from scratchnet.artifact import Artifact
from scratchnet.forward import probabilities, scores
from scratchnet.status import STATUS
from tests.conftest import RunningServer, start_server

CALL_SECONDS = 10.0
"""Every call's deadline: an answer that does not come by then is a hang, and fails."""
CLIENT_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
}
"""What a client's mistake may be answered with."""
MODEL = "scratchnet"
H, W, CLASSES = 28, 28, 10
HUGE_NAME = "n" * 100_000
DATATYPES = ["UINT8", "FP32"] * 2 + ["FP64", "INT64", "BYTES", "BOOL", "FP16", "", "uint8", "junk"]
FLOATS = [math.nan, math.inf, -math.inf, 1e38, -1e38, 3.4e38, -0.0, 1e-45]

settings.register_profile(
    "fuzz",
    max_examples=150,
    deadline=timedelta(seconds=CALL_SECONDS * 2),
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "long",
    parent=settings.get_profile("fuzz"),
    max_examples=1500,
    derandomize=False,
)
FUZZ_PROFILE = settings.get_profile(os.environ.get("SCRATCHNET_FUZZ_PROFILE", "fuzz"))


# --- the server and what it must answer -------------------------------------------------------
@pytest.fixture(scope="module")
def fuzzed(model_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The float32 article model (it takes UINT8 and FP32) on the default flags; afterwards it
    must still answer, have logged no traceback, and stop cleanly."""
    running = start_server(model_onnx, tmp_dir=tmp_path_factory.mktemp("fuzzed"), http=True)
    yield running
    with grpc.insecure_channel(running.target) as channel:
        images = np.zeros((2, H, W), np.uint8)
        tensor = v1.Tensor(dtype=v1.DATA_TYPE_UINT8, shape=images.shape, data=images.tobytes())
        reply = ClassifierStub(channel).Predict(v1.PredictRequest(images=tensor), timeout=30)
        assert len(reply.labels) == 2
    assert running.process.poll() is None, running.stderr()
    assert running.stop() == 0
    assert "Traceback" not in running.stderr(), running.stderr()[-3000:]


@dataclass(frozen=True)
class Answer:
    """A call's outcome: OK with the reply, or an error code with its details."""

    code: grpc.StatusCode
    details: str
    reply: Any = None


def check_refusal(answer: Answer) -> None:
    assert answer.code in CLIENT_ERRORS, (answer.code, answer.details[:500])
    assert answer.details, answer.code  # a refusal says why


def reference(artifact: Artifact, images: NDArray[Any]) -> NDArray[np.float64]:
    """The forward pass's scores for images as sent (uint8 pixels or float32 in [0, 1])."""
    return scores(artifact.weights, artifact.biases, images)


def check_labels(labels: NDArray[Any], expected: NDArray[np.float64]) -> None:
    """Labels must be the forward pass's, except where its two best classes are within float32
    rounding of each other."""
    assert labels.shape == (len(expected),)
    best = expected.argmax(axis=1)
    ordered = np.sort(expected, axis=1)
    close = ordered[:, -1] - ordered[:, -2] < 1e-4 * (1 + np.abs(ordered[:, -1]))
    assert np.array_equal(labels[~close], best[~close]), (labels, best)


def check_matrix(name: str, values: NDArray[Any], expected: NDArray[np.float64]) -> None:
    assert values.shape == expected.shape, (name, values.shape)
    assert np.isfinite(values).all(), (name, values)  # never non-finite with OK
    assert np.allclose(values, expected, rtol=1e-4, atol=1e-4), name


def check_outputs(
    artifact: Artifact, images: NDArray[Any], outputs: dict[str, NDArray[Any]]
) -> None:
    expected = reference(artifact, images)
    if "label" in outputs:
        check_labels(outputs["label"], expected)
    if "scores" in outputs:
        check_matrix("scores", outputs["scores"], expected)
    if "probabilities" in outputs:
        check_matrix("probabilities", outputs["probabilities"], probabilities(expected))
        assert np.allclose(outputs["probabilities"].sum(axis=1), 1, atol=1e-5)


def pixels(datatype: str, data: bytes | Sequence[Any], shape: Sequence[int]) -> NDArray[Any]:
    """The images a request carries, as the server must read them; AssertionError if it cannot
    (then the server must not have answered OK)."""
    assert datatype in ("UINT8", "FP32"), datatype
    assert len(shape) == 3 and tuple(shape[1:]) == (H, W) and shape[0] >= 1, shape
    dtype = np.dtype(np.uint8 if datatype == "UINT8" else "<f4")
    if isinstance(data, bytes):
        assert len(data) % dtype.itemsize == 0, len(data)
        array = np.frombuffer(data, dtype=dtype)
    else:
        array = np.asarray(list(data), dtype=np.float64)
        assert np.array_equal(array, array.astype(dtype)), "values outside the datatype"
        array = array.astype(dtype)
    assert array.size == math.prod(shape), (array.size, shape)
    images = array.reshape(shape)
    if datatype == "FP32":
        assert np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1
    return images


# --- strategies -------------------------------------------------------------------------------
def shapes() -> st.SearchStrategy[list[int]]:
    valid = st.integers(1, 4).map(lambda n: [n, H, W])
    odd = st.lists(
        st.one_of(
            st.integers(-3, 40),
            st.sampled_from([H, W, 0, 2**31, 2**62, -(2**62)]),
        ),
        max_size=5,
    )
    return st.one_of(valid, valid, odd)


@st.composite
def values(draw: st.DrawFn, datatype: str, count: int) -> NDArray[Any]:
    """`count` values for a tensor: pixels from a drawn seed (uint8 0-255, float32 in [0, 1]),
    a few of them replaced by drawn specials (NaN, infinities, 1e38, out-of-range integers).
    Drawing a seed rather than every value keeps each example cheap to make."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if datatype == "FP32":
        array: NDArray[Any] = rng.random(count, dtype=np.float32)
        specials: st.SearchStrategy[Any] = st.sampled_from(FLOATS)
    else:
        array = rng.integers(0, 256, count).astype(np.int64)
        specials = st.sampled_from([-1, 256, 2**31, 2**32 - 1])
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 3])) if count else 0):
        array[draw(st.integers(0, count - 1))] = draw(specials)
    return array


def element_count(shape: Sequence[int]) -> int:
    """How many values a shape holds, or -1 for a shape no test should fill."""
    if not shape or not all(0 <= dim <= 4 * H * W for dim in shape):
        return -1
    count = math.prod(shape)
    return count if count <= 4 * H * W else -1


@st.composite
def payload(draw: st.DrawFn, datatype: str, shape: Sequence[int]) -> bytes:
    """Bytes for a tensor: the right count of values, that count give or take a byte, or any
    bytes at all."""
    count = element_count(shape)
    kind = draw(st.sampled_from(["exact", "exact", "exact", "off", "any"]))
    if count < 0 or kind == "any":
        return draw(st.binary(max_size=64))
    dtype = "<f4" if datatype == "FP32" else np.uint8
    data = draw(values(datatype, count)).astype(dtype).tobytes()
    if kind == "off":
        return data[:-1] if data and draw(st.booleans()) else data + b"\x00"
    return data


@st.composite
def v1_requests(draw: st.DrawFn) -> v1.PredictRequest:
    dtype = draw(st.sampled_from([v1.DATA_TYPE_UINT8, v1.DATA_TYPE_FLOAT32, 0, 3, 99]))
    shape = draw(shapes())
    name = "FP32" if dtype == v1.DATA_TYPE_FLOAT32 else "UINT8"
    request = v1.PredictRequest(
        return_scores=draw(st.booleans()),
        return_probabilities=draw(st.booleans()),
        request_id=draw(st.text(max_size=20)),
        model_name=draw(st.sampled_from(["", "", MODEL, "nope", HUGE_NAME])),
        model_version=draw(st.sampled_from(["", "", "1", "2", "x" * 1000])),
    )
    if draw(st.integers(0, 9)):  # mostly with images
        request.images.dtype = dtype
        request.images.shape.extend(shape)
        request.images.data = draw(payload(name, shape))
    return request


def v1_images(request: v1.PredictRequest) -> NDArray[Any] | None:
    """The images of a request the server must answer, None for one it must refuse."""
    try:
        assert request.model_name in ("", MODEL) and request.model_version in ("", "1")
        assert request.HasField("images")
        datatype = {v1.DATA_TYPE_UINT8: "UINT8", v1.DATA_TYPE_FLOAT32: "FP32"}
        return pixels(datatype.get(request.images.dtype, ""), request.images.data,
                      request.images.shape)  # fmt: skip
    except AssertionError:
        return None


def v1_check(artifact: Artifact, request: v1.PredictRequest, answer: Answer) -> None:
    images = v1_images(request)
    if images is None:
        check_refusal(answer)
        return
    assert answer.code == grpc.StatusCode.OK, (answer.code, answer.details[:500])
    reply: v1.PredictResponse = answer.reply
    outputs = {"label": np.array(reply.labels)}
    for name, asked in (
        ("scores", request.return_scores),
        ("probabilities", request.return_probabilities),
    ):
        values = np.array(getattr(reply, name), dtype=np.float32)
        assert bool(len(values)) == asked, name
        if asked:
            outputs[name] = values.reshape(len(images), CLASSES)
    assert reply.request_id == request.request_id and reply.num_classes == CLASSES
    check_outputs(artifact, images, outputs)


@st.composite
def v2_requests(draw: st.DrawFn) -> oip.ModelInferRequest:
    request = oip.ModelInferRequest(
        model_name=draw(st.sampled_from([MODEL, MODEL, MODEL, "", "nope", HUGE_NAME])),
        model_version=draw(st.sampled_from(["", "", "1", "0", "-1"])),
        id=draw(st.text(max_size=20)),
    )
    raw = draw(st.booleans())
    for _ in range(draw(st.sampled_from([1, 1, 1, 0, 2]))):
        datatype = draw(st.sampled_from(DATATYPES))
        shape = draw(shapes())
        tensor = request.inputs.add(
            name=draw(st.sampled_from(["images", "images", "images", "x", "", HUGE_NAME])),
            datatype=datatype,
            shape=shape,
        )
        if raw:
            request.raw_input_contents.append(draw(payload(datatype, shape)))
            continue
        count = element_count(shape)
        if count < 0 or draw(st.integers(0, 4)) == 0:
            count = draw(st.integers(0, 50))  # a count that disagrees with the shape
        field = draw(st.sampled_from(["fp32_contents", "uint_contents", "int_contents",
                                      "bytes_contents", "fp64_contents", "none"]))  # fmt: skip
        contents = tensor.contents
        if field == "fp32_contents":
            contents.fp32_contents.extend(draw(values("FP32", count)).tolist())
        elif field == "uint_contents":
            contents.uint_contents.extend(draw(values("UINT8", count)).clip(0, 2**32 - 1).tolist())
        elif field == "int_contents":
            int32 = draw(values("UINT8", count)).clip(-(2**31), 2**31 - 1)
            contents.int_contents.extend(int32.tolist())
        elif field == "fp64_contents":
            contents.fp64_contents.extend(draw(values("FP32", count)).astype(float).tolist())
        elif field == "bytes_contents":
            contents.bytes_contents.extend([b"\x01"] * count)
    for _ in range(draw(st.integers(0, 3))):
        output = request.outputs.add(
            name=draw(st.sampled_from(["label", "scores", "probabilities", "nope", HUGE_NAME]))
        )
        if draw(st.integers(0, 3)) == 0:
            parameter = output.parameters["classification"]
            kind = draw(st.sampled_from(["int64_param", "bool_param", "string_param"]))
            value = {"int64_param": st.integers(-2, 12), "bool_param": st.booleans(),
                     "string_param": st.text(max_size=3)}[kind]  # fmt: skip
            setattr(parameter, kind, draw(value))
    return request


def v2_outputs(reply: oip.ModelInferResponse) -> dict[str, NDArray[Any]]:
    decoded: dict[str, NDArray[Any]] = {}
    assert len(reply.raw_output_contents) == len(reply.outputs)
    for tensor, data in zip(reply.outputs, reply.raw_output_contents, strict=True):
        if tensor.datatype == "BYTES":
            decoded[tensor.name] = np.array(_strings(data)).reshape(tuple(tensor.shape))
            continue
        dtype = {"INT64": "<i8", "FP32": "<f4"}[tensor.datatype]
        decoded[tensor.name] = np.frombuffer(data, dtype=dtype).reshape(tuple(tensor.shape))
    return decoded


def _strings(data: bytes) -> list[bytes]:
    values, offset = [], 0
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "little")
        values.append(data[offset + 4 : offset + 4 + length])
        offset += 4 + length
    return values


def v2_expected(request: oip.ModelInferRequest) -> tuple[NDArray[Any], dict[str, int]] | None:
    """The images of a request the server must answer and the outputs it asks for (name ->
    class count, 0 for the tensor itself; all of them if none), None for one it must refuse."""
    try:
        assert request.model_name == MODEL and request.model_version in ("", "1")
        [tensor] = request.inputs
        assert tensor.name == "images"
        if request.raw_input_contents:
            assert not tensor.HasField("contents")
            [data] = request.raw_input_contents
            images = pixels(tensor.datatype, data, tensor.shape)
        else:
            fields = [f.name for f, _ in tensor.contents.ListFields()]
            expected_field = {"UINT8": ["uint_contents"], "FP32": ["fp32_contents"]}
            assert fields == expected_field.get(tensor.datatype), fields
            images = pixels(tensor.datatype, getattr(tensor.contents, fields[0]), tensor.shape)
        outputs: dict[str, int] = {}
        for output in request.outputs:
            assert output.name in ("label", "scores", "probabilities")
            count = 0
            if "classification" in output.parameters:
                parameter = output.parameters["classification"]
                assert parameter.WhichOneof("parameter_choice") == "int64_param"
                count = parameter.int64_param
                assert count >= 0
            outputs.setdefault(output.name, count)
        return images, outputs or {"scores": 0, "label": 0, "probabilities": 0}
    except (AssertionError, ValueError):
        return None


def v2_check(artifact: Artifact, request: oip.ModelInferRequest, answer: Answer) -> None:
    expected = v2_expected(request)
    if expected is None:
        check_refusal(answer)
        return
    assert answer.code == grpc.StatusCode.OK, (answer.code, answer.details[:500])
    images, asked = expected
    reply: oip.ModelInferResponse = answer.reply
    outputs = v2_outputs(reply)
    assert list(outputs) == list(asked), (list(outputs), asked)
    assert reply.id == request.id and reply.model_name == MODEL
    for name, count in asked.items():
        if count:
            top = outputs.pop(name)
            assert top.shape == (len(images), min(count, 1 if name == "label" else CLASSES))
    check_outputs(artifact, images, outputs)


# --- how the requests travel --------------------------------------------------------------
class Transport(Protocol):
    """One binding of the Open Inference Protocol, as the fuzz uses it."""

    def infer(self, request: oip.ModelInferRequest) -> Answer | None:
        """ModelInfer: the answer to `request`; None if this binding cannot express it."""
        ...

    def close(self) -> None:
        """Let go of connections."""
        ...


class GrpcTransport:
    """ModelInfer over gRPC."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._stub = GRPCInferenceServiceStub(channel)

    def infer(self, request: oip.ModelInferRequest) -> Answer:
        return call(lambda: self._stub.ModelInfer(request, timeout=CALL_SECONDS))

    def close(self) -> None:
        pass  # the channel is the module's


class HttpTransport:
    """ModelInfer over the REST binding: typed contents as JSON `data`, raw contents as Triton's
    binary tensor data, answers in JSON; the HTTP status read back as the gRPC code that
    scratchnet.status pairs with it. A request HTTP cannot express (typed values in a contents
    field that is not the datatype's own: JSON has one `data`) is not sent (None)."""

    def __init__(self, server: RunningServer) -> None:
        assert server.http_port is not None
        self._connection = http.client.HTTPConnection(
            server.host, server.http_port, timeout=CALL_SECONDS
        )

    def close(self) -> None:
        self._connection.close()

    def infer(self, request: oip.ModelInferRequest) -> Answer | None:
        body = _http_body(request)
        if body is None:
            return None
        path = f"/v2/models/{quote(request.model_name, safe='')}"
        if request.model_version:
            path += f"/versions/{quote(request.model_version, safe='')}"
        document, binary = body
        head = json.dumps(document).encode()
        headers = {"Content-Type": "application/json"}
        if binary:
            headers["Inference-Header-Content-Length"] = str(len(head))
        try:
            self._connection.request("POST", path + "/infer", head + binary, headers)
            response = self._connection.getresponse()
            data = response.read()
        except (http.client.HTTPException, OSError):
            self._connection.close()  # reconnects at the next request
            raise
        if response.status == 200:
            return Answer(grpc.StatusCode.OK, "", _from_json(json.loads(data)))
        code = HTTP_CODES.get(response.status)
        if code is None:  # any other client error stays one; anything else is the server's
            code = (
                grpc.StatusCode.INVALID_ARGUMENT
                if response.status < 500
                else grpc.StatusCode.INTERNAL
            )
        return Answer(code, data.decode(errors="replace") or str(response.status))


HTTP_CODES = {status.http: status.grpc for status in STATUS.values() if status.http != 400}
HTTP_CODES.update({400: grpc.StatusCode.INVALID_ARGUMENT, 413: grpc.StatusCode.RESOURCE_EXHAUSTED})
"""HTTP statuses as the gRPC codes they stand for (400 is both INVALID_ARGUMENT and
FAILED_PRECONDITION: either is a client error)."""


def _http_body(request: oip.ModelInferRequest) -> tuple[dict[str, Any], bytes] | None:
    inputs, binary = [], b""
    for index, tensor in enumerate(request.inputs):
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
        }
        if request.raw_input_contents:
            raw = (
                request.raw_input_contents[index]
                if index < len(request.raw_input_contents)
                else b""
            )
            entry["parameters"] = {"binary_data_size": len(raw)}
            binary += raw
        else:
            fields = [f.name for f, _ in tensor.contents.ListFields()]
            own = datatypes.by_name(tensor.datatype)
            if fields and (own is None or fields != [own.contents_field]):
                return None
            if fields:
                values = list(getattr(tensor.contents, fields[0]))
                # BYTES elements travel as JSON strings.
                entry["data"] = [v.decode("latin-1") if isinstance(v, bytes) else v for v in values]
        inputs.append(entry)
    outputs = []
    for output in request.outputs:
        entry = {"name": output.name}
        if "classification" in output.parameters:
            parameter = output.parameters["classification"]
            entry["parameters"] = {
                "classification": getattr(parameter, str(parameter.WhichOneof("parameter_choice")))
            }
        outputs.append(entry)
    document: dict[str, Any] = {"id": request.id, "inputs": inputs}
    if outputs:
        document["outputs"] = outputs
    return document, binary


def _from_json(document: dict[str, Any]) -> oip.ModelInferResponse:
    """A JSON answer as the ModelInferResponse gRPC would have given."""
    reply = oip.ModelInferResponse(
        model_name=document["model_name"],
        model_version=document.get("model_version", ""),
        id=document.get("id", ""),
    )
    for output in document["outputs"]:
        reply.outputs.add(name=output["name"], datatype=output["datatype"], shape=output["shape"])
        if output["datatype"] == "BYTES":
            reply.raw_output_contents.append(
                b"".join(len(v.encode()).to_bytes(4, "little") + v.encode() for v in output["data"])
            )
        else:
            dtype = {"INT64": "<i8", "FP32": "<f4"}[output["datatype"]]
            reply.raw_output_contents.append(np.asarray(output["data"], dtype=dtype).tobytes())
    return reply


TRANSPORTS: dict[str, Callable[[RunningServer, grpc.Channel], Transport]] = {
    "grpc": lambda server, channel: GrpcTransport(channel),
    "http": lambda server, channel: HttpTransport(server),
}
"""The bindings the Open Inference Protocol fuzz runs through."""


def call(make: Callable[[], Any]) -> Answer:
    try:
        return Answer(grpc.StatusCode.OK, "", make())
    except grpc.RpcError as error:
        assert isinstance(error, grpc.Call)
        return Answer(error.code(), error.details() or "")


@pytest.fixture(scope="module")
def channel(fuzzed: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(fuzzed.target) as opened:
        yield opened


@pytest.fixture(scope="module")
def transports(fuzzed: RunningServer, channel: grpc.Channel) -> Iterator[dict[str, Transport]]:
    """One sender per binding, for the module."""
    made = {name: make(fuzzed, channel) for name, make in TRANSPORTS.items()}
    yield made
    for transport in made.values():
        transport.close()


# --- the tests -------------------------------------------------------------------------------
@FUZZ_PROFILE
@given(request=v1_requests())
@example(request=v1.PredictRequest(images=v1.Tensor(dtype=v1.DATA_TYPE_UINT8, shape=[1, H, W],
                                                    data=bytes(H * W))))  # fmt: skip
def test_v1_predict_answers_a_client_error_or_the_forward_pass(
    channel: grpc.Channel, artifact: Artifact, request: v1.PredictRequest
) -> None:
    stub = ClassifierStub(channel)
    v1_check(artifact, request, call(lambda: stub.Predict(request, timeout=CALL_SECONDS)))


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
@FUZZ_PROFILE
@given(request=v2_requests())
@example(request=oip.ModelInferRequest(  # 200,000 typed values for a [1,28,28] input
    model_name=MODEL,
    inputs=[oip.ModelInferRequest.InferInputTensor(
        name="images", datatype="FP32", shape=[1, H, W],
        contents=oip.InferTensorContents(fp32_contents=np.zeros(200_000, np.float32)),
    )],
))  # fmt: skip
def test_v2_model_infer_answers_a_client_error_or_the_forward_pass(
    transports: dict[str, Transport],
    artifact: Artifact,
    transport: str,
    request: oip.ModelInferRequest,
) -> None:
    answer = transports[transport].infer(request)
    assume(answer is not None)
    assert answer is not None
    v2_check(artifact, request, answer)


@FUZZ_PROFILE
@given(requests=st.lists(v1_requests(), min_size=1, max_size=4))
def test_v1_stream_answers_in_order_until_the_first_refusal(
    channel: grpc.Channel, artifact: Artifact, requests: list[v1.PredictRequest]
) -> None:
    replies: list[v1.PredictResponse] = []
    stream = ClassifierStub(channel).PredictStream(iter(requests), timeout=CALL_SECONDS)
    answer = call(lambda: replies.extend(stream))
    for request, reply in zip(requests, replies, strict=False):
        v1_check(artifact, request, Answer(grpc.StatusCode.OK, "", reply))
    if answer.code == grpc.StatusCode.OK:
        assert len(replies) == len(requests)
    else:  # the stream ends at the first bad request, with its error
        v1_check(artifact, requests[len(replies)], answer)


@FUZZ_PROFILE
@given(requests=st.lists(v2_requests(), min_size=1, max_size=4))
def test_v2_stream_answers_every_request_with_a_reply_or_its_error(
    channel: grpc.Channel, artifact: Artifact, requests: list[oip.ModelInferRequest]
) -> None:
    stub = GRPCInferenceServiceStub(channel)
    stream = stub.ModelStreamInfer(iter(requests), timeout=CALL_SECONDS)
    replies: list[oip.ModelStreamInferResponse] = []
    answer = call(lambda: replies.extend(stream))
    if answer.code != grpc.StatusCode.OK:  # a message too large for the server ends the stream
        assert answer.code == grpc.StatusCode.RESOURCE_EXHAUSTED, answer
        return
    assert len(replies) == len(requests)
    for request, reply in zip(requests, replies, strict=True):
        if reply.error_message:
            assert reply.infer_response.id == request.id
            v2_check(artifact, request, Answer(grpc.StatusCode.INVALID_ARGUMENT, "in a reply"))
        else:
            v2_check(artifact, request, Answer(grpc.StatusCode.OK, "", reply.infer_response))


METHODS = [
    f"/{service}/{method}"
    for service, methods in [
        ("scratchnet.v1.Classifier", ["Predict", "PredictStream", "GetModelInfo"]),
        ("inference.GRPCInferenceService", ["ModelInfer", "ModelStreamInfer", "ModelMetadata",
                                            "ModelReady", "ModelStatistics", "ModelConfig",
                                            "RepositoryIndex", "RepositoryModelLoad"]),
    ]
    for method in methods
]  # fmt: skip


@FUZZ_PROFILE
@given(method=st.sampled_from(METHODS), data=st.binary(max_size=3000))
@example(method="/scratchnet.v1.Classifier/Predict", data=b"\xff" * 64)
def test_garbage_bytes_as_the_whole_message_are_a_client_error_or_a_valid_reading(
    channel: grpc.Channel, method: str, data: bytes
) -> None:
    if method.endswith("Stream") or method.endswith("StreamInfer"):
        stream = channel.stream_stream(method, request_serializer=None, response_deserializer=None)
        answer = call(lambda: list(stream(iter([data]), timeout=CALL_SECONDS)))
    else:
        unary = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        answer = call(lambda: unary(data, timeout=CALL_SECONDS))
    # Bytes that happen to parse are a request like any other: answered, or refused as such.
    if answer.code != grpc.StatusCode.OK:
        check_refusal(answer)
