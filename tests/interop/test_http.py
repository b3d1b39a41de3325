"""The Open Inference Protocol over HTTP/REST against the real server: raw requests as curl or
any HTTP library sends them, JSON and binary tensors, mixed, the protocol's errors, and the same
answers as over gRPC, bit for bit."""

from __future__ import annotations

import gzip
import http.client
import json
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import numpy as np
import pytest
from numpy.typing import NDArray

from scratchnet.api.inference import open_inference_grpc_pb2 as pb
from scratchnet.api.inference import open_inference_grpc_pb2_grpc
from scratchnet.datasets import Dataset
from tests.conftest import RunningServer
from tests.interop.conftest import Reference

MODEL = "scratchnet"
INFER = f"/v2/models/{MODEL}/infer"
TIMEOUT = 30.0


class Answer:
    """An HTTP answer: status, headers (lower-case names) and body."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        length = self.headers.get("inference-header-content-length")
        return json.loads(self.body if length is None else self.body[: int(length)])

    @property
    def binary(self) -> bytes:
        return self.body[int(self.headers["inference-header-content-length"]) :]


@pytest.fixture(scope="module")
def server(http_server: RunningServer) -> RunningServer:
    return http_server


def call(
    server: RunningServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """One request on a fresh connection."""
    url = urlsplit(server.http_url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=TIMEOUT)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        reply = connection.getresponse()
        found = {name.lower(): value for name, value in reply.getheaders()}
        return Answer(reply.status, found, reply.read())
    finally:
        connection.close()


def json_request(images: NDArray[Any], *outputs: str | dict[str, Any], **extra: Any) -> bytes:
    tensor = {
        "name": "images",
        "shape": list(images.shape),
        "datatype": "UINT8" if images.dtype == np.uint8 else "FP32",
        "data": images.ravel().tolist(),
    }
    document = {"inputs": [tensor], **extra}
    if outputs:
        document["outputs"] = [{"name": o} if isinstance(o, str) else o for o in outputs]
    return json.dumps(document).encode()


def binary_request(
    images: NDArray[Any], outputs: list[dict[str, Any]] | None = None, **extra: Any
) -> tuple[bytes, dict[str, str]]:
    """A request with the images as binary data; its body and headers."""
    raw = np.ascontiguousarray(images).tobytes()
    tensor = {
        "name": "images",
        "shape": list(images.shape),
        "datatype": "UINT8" if images.dtype == np.uint8 else "FP32",
        "parameters": {"binary_data_size": len(raw)},
    }
    document: dict[str, Any] = {"inputs": [tensor], **extra}
    if outputs is not None:
        document["outputs"] = outputs
    head = json.dumps(document).encode()
    return head + raw, {"Inference-Header-Content-Length": str(len(head))}


def outputs_of(answer: Answer) -> dict[str, NDArray[Any]]:
    """Each output as an array, read from JSON data or from the binary data after the JSON."""
    dtypes = {"FP32": np.float32, "INT64": np.int64}
    found, offset = {}, 0
    for output in answer.json()["outputs"]:
        dtype = dtypes[output["datatype"]]
        size = output.get("parameters", {}).get("binary_data_size")
        if size is None:
            value = np.asarray(output["data"], dtype=dtype)
        else:
            value = np.frombuffer(answer.binary[offset : offset + size], dtype=dtype)
            offset += size
        found[output["name"]] = value.reshape(output["shape"])
    return found


@pytest.fixture(scope="module")
def images(mnist: Dataset) -> NDArray[np.uint8]:
    return mnist.test_images[:64]


def test_health_and_readiness(server: RunningServer) -> None:
    for path in ("/v2/health/live", "/v2/health/ready", f"/v2/models/{MODEL}/ready"):
        answer = call(server, "GET", path)
        assert (answer.status, answer.body) == (200, b""), path
    assert call(server, "GET", f"/v2/models/{MODEL}/versions/1/ready").status == 200
    for path in ("/v2/models/no-such-model/ready", f"/v2/models/{MODEL}/versions/999/ready"):
        answer = call(server, "GET", path)
        # Triton's words, and as every error here: a JSON body.
        assert (answer.status, answer.json()) == (400, {"error": "Model version not ready"}), path


def test_server_and_model_metadata(server: RunningServer) -> None:
    answer = call(server, "GET", "/v2")
    assert answer.status == 200 and answer.headers["content-type"] == "application/json"
    assert answer.json()["name"] == "scratchnet"
    assert answer.json()["extensions"] == [
        "classification",
        "binary_tensor_data",
        "model_repository",
        "model_configuration",
        "statistics",
    ]
    metadata = call(server, "GET", f"/v2/models/{MODEL}").json()
    assert metadata["inputs"] == [{"name": "images", "datatype": "FP32", "shape": [-1, 28, 28]}]
    assert call(server, "GET", f"/v2/models/{MODEL}/versions/1").json() == metadata


def test_json_inference_matches_numpy(
    server: RunningServer, images: NDArray[np.uint8], reference: Reference
) -> None:
    answer = call(server, "POST", INFER, json_request(images, id="json-1"))
    assert answer.status == 200, answer.body
    document = answer.json()
    assert (document["model_name"], document["model_version"], document["id"]) == (
        MODEL,
        "1",
        "json-1",
    )
    outputs = outputs_of(answer)
    assert list(outputs) == ["scores", "label", "probabilities"]
    assert np.array_equal(outputs["label"], reference.labels[:64])
    np.testing.assert_allclose(outputs["scores"], reference.scores[:64], rtol=1e-5, atol=1e-4)


def test_binary_inputs_and_outputs_equal_json_bit_for_bit(
    server: RunningServer, images: NDArray[np.uint8]
) -> None:
    pixels = (images / 255.0).astype(np.float32)
    as_json = outputs_of(call(server, "POST", INFER, json_request(pixels)))
    body, headers = binary_request(pixels, parameters={"binary_data_output": True})
    answer = call(server, "POST", INFER, body, headers)
    assert answer.status == 200
    assert answer.headers["content-type"] == "application/octet-stream"
    as_binary = outputs_of(answer)
    assert all(o["parameters"]["binary_data_size"] > 0 for o in answer.json()["outputs"])
    for name, value in as_json.items():
        assert value.tobytes() == as_binary[name].tobytes(), name


def test_binary_and_json_mixed_in_one_request(
    server: RunningServer, images: NDArray[np.uint8], reference: Reference
) -> None:
    outputs = [{"name": "label"}, {"name": "probabilities", "parameters": {"binary_data": True}}]
    body, headers = binary_request(images[:3], outputs)
    answer = call(server, "POST", INFER, body, headers)
    assert answer.status == 200
    label, probabilities = answer.json()["outputs"]
    assert label["data"] == reference.labels[:3].tolist()
    assert probabilities["parameters"] == {"binary_data_size": 3 * 10 * 4}
    got = np.frombuffer(answer.binary, dtype=np.float32).reshape(3, 10)
    np.testing.assert_allclose(got, reference.probabilities[:3], rtol=1e-4, atol=1e-6)


def test_the_same_request_gives_bit_identical_outputs_over_grpc(
    server: RunningServer, images: NDArray[np.uint8]
) -> None:
    pixels = (images / 255.0).astype(np.float32)
    request = pb.ModelInferRequest(model_name=MODEL, raw_input_contents=[pixels.tobytes()])
    request.inputs.add(name="images", datatype="FP32", shape=pixels.shape)
    with grpc.insecure_channel(server.target) as channel:
        stub = open_inference_grpc_pb2_grpc.GRPCInferenceServiceStub(channel)
        reply = stub.ModelInfer(request, timeout=TIMEOUT)
    over_grpc = {
        output.name: raw
        for output, raw in zip(reply.outputs, reply.raw_output_contents, strict=True)
    }
    body, headers = binary_request(pixels, parameters={"binary_data_output": True})
    over_binary = outputs_of(call(server, "POST", INFER, body, headers))
    over_json = outputs_of(call(server, "POST", INFER, json_request(pixels)))
    assert list(over_grpc) == list(over_binary) == list(over_json)
    for name, raw in over_grpc.items():
        assert over_binary[name].tobytes() == raw, name
        assert over_json[name].tobytes() == raw, name


def images_body(shape: list[int], datatype: str = "UINT8", name: str = "images") -> bytes:
    """A request for one input with one value of data, whatever the shape says."""
    tensor = {"name": name, "shape": shape, "datatype": datatype, "data": [0]}
    return json.dumps({"inputs": [tensor]}).encode()


UNKNOWN = "Request for unknown model:"
HEADER = "Inference-Header-Content-Length"


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "message"),
    [
        (INFER, b'{"inputs": [', {}, 400, "is not valid JSON"),
        (INFER, b"[]", {}, 400, "is a JSON array, expected an object"),
        (
            "/v2/models/no-such-model/infer",
            b"{}",
            {},
            404,
            f"{UNKNOWN} 'no-such-model' is not found",
        ),
        (
            f"/v2/models/{MODEL}/versions/7/infer",
            b"{}",
            {},
            404,
            f"{UNKNOWN} '{MODEL}' version 7 is not found",
        ),
        (
            INFER,
            images_body([2, 27, 28]),
            {},
            400,
            f"model '{MODEL}': expected shape [-1,28,28], got [2,27,28]",
        ),
        (
            INFER,
            images_body([1, 28, 28]),
            {},
            400,
            "expected 784 values for shape [1,28,28], got 1 in data",
        ),
        (
            INFER,
            images_body([1, 28, 28], "FP64"),
            {},
            400,
            "expected datatype FP32 or UINT8, got FP64",
        ),
        (
            INFER,
            images_body([1], name="pixels"),
            {},
            400,
            f"unexpected inference input 'pixels' for model '{MODEL}', expected images",
        ),
        (
            INFER,
            b'{"inputs": []}xy',
            {HEADER: "99"},
            400,
            "says 99 bytes of JSON, but the body has only 16 bytes",
        ),
        (
            INFER,
            b'{"inputs": []}',
            {HEADER: "ten"},
            400,
            "is 'ten', expected the JSON's length in bytes",
        ),
        (INFER, b"{}", {"Content-Encoding": "br"}, 400, "unsupported Content-Encoding 'br'"),
        (
            INFER,
            b'{"inputs": [{"name": "images", "datatype": "UINT8", "data": [0]}]}',
            {},
            400,
            f"input 'images' of model '{MODEL}': 'shape' is missing, expected an array of integers",
        ),
        (
            INFER,
            b'{"inputs": [{"name": "images", "datatype": 5, "shape": [1], "data": [0]}]}',
            {},
            400,
            f"input 'images' of model '{MODEL}': 'datatype' is a JSON number, expected a string "
            'such as "FP32"',
        ),
        (
            INFER,
            b'{"inputs": []}\x00\x01binary',
            {},
            400,
            f"(binary tensor data after the JSON needs the header {HEADER})",
        ),
    ],
)
def test_errors_are_json_with_the_protocol_status(
    server: RunningServer,
    path: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    message: str,
) -> None:
    answer = call(server, "POST", path, body, headers)
    assert answer.status == status, answer.body
    assert answer.headers["content-type"] == "application/json"
    error = answer.json()
    assert list(error) == ["error"]
    assert message in error["error"]


def test_unknown_paths_and_methods_are_json_errors(server: RunningServer) -> None:
    missing = call(server, "GET", "/v2/trace/setting")
    assert (missing.status, missing.json()) == (
        404,
        {"error": "no endpoint GET /v2/trace/setting on this server"},
    )
    wrong = call(server, "GET", INFER)
    assert wrong.status == 405
    assert wrong.json() == {"error": f"method GET is not allowed on {INFER}"}
    assert wrong.headers["allow"] == "POST"
    # Another path, as in Triton: no redirect to a URL made from the request's Host header.
    slashed = call(server, "GET", "/v2/health/ready/")
    assert (slashed.status, slashed.json()) == (
        404,
        {"error": "no endpoint GET /v2/health/ready/ on this server"},
    )


def test_a_gzip_request_is_answered_like_the_plain_one(
    server: RunningServer, images: NDArray[np.uint8]
) -> None:
    plain = call(server, "POST", INFER, json_request(images[:2], "label"))
    packed = call(
        server,
        "POST",
        INFER,
        gzip.compress(json_request(images[:2], "label")),
        {"Content-Encoding": "gzip"},
    )
    assert packed.status == plain.status == 200
    assert packed.body == plain.body


def test_a_body_over_the_limit_is_refused_before_it_is_read(server: RunningServer) -> None:
    url = urlsplit(server.http_url)
    with socket.create_connection((url.hostname, url.port), timeout=TIMEOUT) as sock:
        sock.sendall(
            f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Length: {65 * 2**20}\r\n\r\n".encode()
        )
        status, _, body = read_response(sock)
    assert status == 413  # Content Too Large: no retry can meet it
    assert "over the server's limit of 67108864 (--max-message-mb)" in json.loads(body)["error"]


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length read off a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(lines[0].split()[1]), headers, rest[:length]


def test_a_content_length_shorter_than_the_body_is_a_json_400_and_the_end(
    server: RunningServer, images: NDArray[np.uint8]
) -> None:
    body = json_request(images[:1])
    url = urlsplit(server.http_url)
    with socket.create_connection((url.hostname, url.port), timeout=TIMEOUT) as sock:
        # The rest of the body reads as the next request, which does not parse.
        sock.sendall(
            f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n".encode() + body
        )
        status, headers, reply = read_response(sock)
        if b"cannot parse" not in reply:
            # The truncated JSON was answered before the rest arrived: the rest fails next.
            assert "is not valid JSON" in json.loads(reply)["error"]
            status, headers, reply = read_response(sock)
        assert sock.recv(65536) == b""  # then the server closes the connection
    assert status == 400 and headers["content-type"] == "application/json"
    assert "cannot parse the HTTP request" in json.loads(reply)["error"]


def test_a_body_cut_short_of_its_content_length_gets_no_answer(
    server: RunningServer, images: NDArray[np.uint8]
) -> None:
    body = json_request(images[:1])
    url = urlsplit(server.http_url)
    with socket.create_connection((url.hostname, url.port), timeout=TIMEOUT) as sock:
        head = f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body) + 100}\r\n\r\n"
        sock.sendall(head.encode() + body)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert not received.startswith(b"HTTP/1.1 200"), received[:200]
    assert call(server, "GET", "/v2/health/ready").status == 200


CURL = shutil.which("curl")


@pytest.fixture
def curl(server: RunningServer) -> Iterator[Any]:
    if CURL is None:
        pytest.skip("no curl binary on this machine (the http.client tests above cover the same)")

    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [CURL, "--silent", "--show-error", "--max-time", str(TIMEOUT), *args],
            capture_output=True,
            timeout=TIMEOUT + 5,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    yield run


def test_curl_readiness_metadata_and_json_inference(
    curl: Any,
    server: RunningServer,
    images: NDArray[np.uint8],
    reference: Reference,
    tmp_path: Path,
) -> None:
    base = server.http_url
    assert curl("--fail", f"{base}/v2/health/ready").returncode == 0
    assert curl("--fail", f"{base}/v2/models/nope/ready").returncode == 22  # HTTP >= 400
    metadata = json.loads(curl(f"{base}/v2/models/{MODEL}").stdout)
    assert metadata["name"] == MODEL
    request = tmp_path / "request.json"
    request.write_bytes(json_request(images[:5], "label"))
    result = curl("-X", "POST", "-H", "Content-Type: application/json", "--data-binary",
                  f"@{request}", f"{base}{INFER}")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["outputs"][0]["data"] == reference.labels[:5].tolist()


def test_curl_binary_inference_and_an_error(
    curl: Any,
    server: RunningServer,
    images: NDArray[np.uint8],
    reference: Reference,
    tmp_path: Path,
) -> None:
    body, headers = binary_request(
        images[:4], [{"name": "label", "parameters": {"binary_data": True}}]
    )
    request = tmp_path / "request.bin"
    request.write_bytes(body)
    reply = tmp_path / "reply.bin"
    length = headers["Inference-Header-Content-Length"]
    result = curl("-X", "POST", "-H", f"Inference-Header-Content-Length: {length}",
                  "--data-binary", f"@{request}", "-D", str(tmp_path / "headers.txt"),
                  "-o", str(reply), f"{server.http_url}{INFER}")  # fmt: skip
    assert result.returncode == 0, result.stderr
    seen = (tmp_path / "headers.txt").read_text().lower()
    json_length = int(seen.split("inference-header-content-length: ")[1].split()[0])
    labels = np.frombuffer(reply.read_bytes()[json_length:], dtype="<i8")
    assert labels.tolist() == reference.labels[:4].tolist()
    error = curl(
        "-w", "%{http_code}", "-X", "POST", "-d", '{"inputs": 1}', f"{server.http_url}{INFER}"
    )
    assert error.stdout.endswith(b"400")
    assert b"has no 'inputs' array" in error.stdout


def test_the_classification_extension_over_json_and_binary(
    server: RunningServer, images: NDArray[np.uint8], reference: Reference
) -> None:
    wanted = [{"name": "probabilities", "parameters": {"classification": 2}}]
    answer = call(server, "POST", INFER, json_request(images[:3], *wanted))
    assert answer.status == 200, answer.body
    (output,) = answer.json()["outputs"]
    assert (output["datatype"], output["shape"]) == ("BYTES", [3, 2])
    top = [entry.split(":") for entry in output["data"][::2]]
    assert [int(index) for _, index, *_ in top] == reference.labels[:3].tolist()
    wanted[0]["parameters"]["binary_data"] = True
    body, headers = binary_request(images[:3], wanted)
    packed = call(server, "POST", INFER, body, headers)
    assert packed.status == 200
    size = packed.json()["outputs"][0]["parameters"]["binary_data_size"]
    first = int.from_bytes(packed.binary[:4], "little")
    assert size == len(packed.binary)
    assert packed.binary[4 : 4 + first].decode() == output["data"][0]


def test_repository_configuration_and_statistics_routes(server: RunningServer) -> None:
    index = call(server, "POST", "/v2/repository/index", b'{"ready": true}')
    assert (index.status, index.json()) == (
        200,
        [{"name": MODEL, "version": "1", "state": "READY"}],
    )
    config = call(server, "GET", f"/v2/models/{MODEL}/config").json()
    assert (config["name"], config["max_batch_size"]) == (MODEL, 1024)
    assert [(t["name"], t["dims"]) for t in config["input"]] == [("images", [28, 28])]
    everything = call(server, "GET", "/v2/models/stats").json()
    one = call(server, "GET", f"/v2/models/{MODEL}/versions/1/stats").json()
    assert [s["name"] for s in everything["model_stats"]] == [MODEL]
    assert isinstance(one["model_stats"][0]["inference_stats"]["success"]["count"], int)
    # Triton sends the response cache's figures, zero without a cache; perf_analyzer reads them.
    for field in ("cache_hit", "cache_miss"):
        assert one["model_stats"][0]["inference_stats"][field] == {"count": 0, "ns": 0}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("POST", f"/v2/repository/models/{MODEL}/unload", b"", 400,
         "explicit model unload is not allowed with --model-control-mode none"),
        ("POST", f"/v2/repository/models/{MODEL}/load", b"{}", 400,
         "explicit model load is not allowed"),
        ("POST", f"/v2/repository/models/{MODEL}/load", b'{"parameters": {"file:1": "x"}}', 400,
         "parameter 'file:1' is not supported, expected only 'config'"),
        ("POST", f"/v2/repository/models/{MODEL}/load", b'{"parameters": {"config": 5}}', 400,
         "parameter 'config' is a JSON number, expected a string"),
        ("POST", f"/v2/repository/models/{MODEL}/unload",
         b'{"parameters": {"unload_dependents": "yes"}}', 400,
         "parameter 'unload_dependents' is \"yes\", expected true or false"),
        ("POST", "/v2/repository/index", b"[1]", 400, "the body is a JSON array"),
        # Triton's paths that name a repository: there is one, unnamed (Triton: UNSUPPORTED).
        ("POST", "/v2/repository/other/index", b"{}", 501,
         "'repository_name' specification is not supported (got 'other')"),
        ("POST", f"/v2/repository/other/models/{MODEL}/load", b"{}", 501,
         "'repository_name' specification is not supported"),
        ("POST", f"/v2/repository/other/models/{MODEL}/unload", b"{}", 501,
         "'repository_name' specification is not supported"),
        ("POST", "/v2/repository/index", b'{"ready": 1}', 400, "expected true or false"),
        ("GET", "/v2/models/nope/config", None, 404, "'nope'"),
        # Triton's statistics extension refuses models and versions not served as it does.
        ("GET", f"/v2/models/{MODEL}/versions/7/stats", None, 400,
         f"requested model version is not available for model '{MODEL}'"),
        ("GET", "/v2/models/nope/stats", None, 400, "requested model 'nope' is not available"),
    ],
)  # fmt: skip
def test_repository_routes_refuse_bad_requests_in_the_protocols_words(
    server: RunningServer, method: str, path: str, body: bytes | None, status: int, message: str
) -> None:
    answer = call(server, method, path, body)
    assert answer.status == status, answer.body
    assert message in answer.json()["error"]
