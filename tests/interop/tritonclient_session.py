"""Talk to a running scratchnet server with the official `tritonclient.grpc` and print what it saw.

    python tests/interop/tritonclient_session.py --target HOST:PORT --model NAME --images X.npy

Prints one JSON object on stdout: readiness, metadata, labels of every image in X.npy (sent in
batches with `infer`, and again over `start_stream`), output subsets and the errors of bad
requests as `{"status": ..., "message": ...}`. The pytest tests in this folder run this script in
a subprocess and assert on its output: tritonclient registers the protobuf package `inference`,
as scratchnet's own generated code does, and one Python process refuses the duplicate symbols.
So this script imports only tritonclient and numpy — never `scratchnet.api` or `server`.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
from numpy.typing import NDArray
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

INPUT = "images"
OUTPUTS = ("label", "scores", "probabilities")
STREAM_TIMEOUT_SECONDS = 60.0


def error_of(call: Callable[[], object]) -> dict[str, Any]:
    """Run `call`, which must fail, and return its status and message (or what it returned)."""
    try:
        returned = call()
    except InferenceServerException as error:
        return {"status": error.status(), "message": error.message()}
    return {"status": None, "message": None, "returned": repr(returned)}


def tensor_input(images: NDArray[Any], name: str = INPUT) -> grpcclient.InferInput:
    """An InferInput carrying `images` as raw bytes, with the datatype tritonclient derives."""
    infer_input = grpcclient.InferInput(name, list(images.shape), np_to_triton_dtype(images.dtype))
    infer_input.set_data_from_numpy(images)
    return infer_input


def outputs_of(result: grpcclient.InferResult) -> list[dict[str, Any]]:
    """Name, datatype and shape of each output in a response, in response order."""
    return [
        {"name": o.name, "datatype": o.datatype, "shape": list(o.shape)}
        for o in result.get_response().outputs
    ]


def batches(images: NDArray[Any], size: int) -> list[NDArray[Any]]:
    """`images` cut into consecutive batches of at most `size` images."""
    return [images[start : start + size] for start in range(0, len(images), size)]


def readiness(client: grpcclient.InferenceServerClient, model: str, version: str) -> dict[str, Any]:
    """Server and model readiness, including a model and a version the server does not have."""
    return {
        "server_live": client.is_server_live(),
        "server_ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(model),
        "model_version_ready": client.is_model_ready(model, version),
        "unknown_model_ready": client.is_model_ready("no-such-model"),
        "unknown_version_ready": client.is_model_ready(model, "999999"),
    }


def metadata(client: grpcclient.InferenceServerClient, model: str) -> dict[str, Any]:
    """Server and model metadata as JSON (tritonclient's own message classes, `as_json=True`)."""
    return {
        "server": client.get_server_metadata(as_json=True),
        "model": client.get_model_metadata(model, as_json=True),
        "model_versioned": client.get_model_metadata(
            model, client.get_model_metadata(model).versions[0], as_json=True
        ),
    }


def inference(
    client: grpcclient.InferenceServerClient, model: str, images: NDArray[Any], batch_size: int
) -> dict[str, Any]:
    """Every image through `infer` in batches; the first batch's full outputs and response."""
    labels: list[int] = []
    first: dict[str, Any] = {}
    for index, batch in enumerate(batches(images, batch_size)):
        result = client.infer(model, [tensor_input(batch)], request_id=f"batch-{index}")
        labels.extend(result.as_numpy("label").tolist())
        if index == 0:
            response = result.get_response()
            first = {
                "id": response.id,
                "model_name": response.model_name,
                "model_version": response.model_version,
                "outputs": outputs_of(result),
                "scores": result.as_numpy("scores").tolist(),
                "probabilities": result.as_numpy("probabilities").tolist(),
            }
    return {"labels": labels, "first_batch": first}


def subsets(
    client: grpcclient.InferenceServerClient, model: str, images: NDArray[Any]
) -> dict[str, Any]:
    """Which outputs come back when only some are requested with InferRequestedOutput."""
    found = {}
    for wanted in (["label"], ["probabilities", "scores"], ["scores"]):
        requested = [grpcclient.InferRequestedOutput(name) for name in wanted]
        result = client.infer(model, [tensor_input(images)], outputs=requested)
        found[",".join(wanted)] = {
            "outputs": outputs_of(result),
            "values": {name: result.as_numpy(name).tolist() for name in wanted},
        }
    return found


def streaming(
    client: grpcclient.InferenceServerClient, model: str, images: NDArray[Any], batch_size: int
) -> dict[str, Any]:
    """Every image through `async_stream_infer`, with one bad request (a wrong shape) in the
    middle; returns each response in arrival order: its id and labels, or its error."""
    responses: queue.Queue[dict[str, Any]] = queue.Queue()

    def on_response(result: grpcclient.InferResult | None, error: Exception | None) -> None:
        if error is not None:
            responses.put({"error": str(error)})
        else:
            assert result is not None
            responses.put(
                {
                    "id": result.get_response().id,
                    "labels": result.as_numpy("label").tolist(),
                }
            )

    chunks = batches(images, batch_size)
    bad_at = len(chunks) // 2
    client.start_stream(callback=on_response)
    try:
        for index, chunk in enumerate(chunks):
            if index == bad_at:
                bad = tensor_input(chunk[:, :, :-1])
                client.async_stream_infer(model, [bad], request_id="bad")
            client.async_stream_infer(model, [tensor_input(chunk)], request_id=f"chunk-{index}")
        received = [responses.get(timeout=STREAM_TIMEOUT_SECONDS) for _ in range(len(chunks) + 1)]
    finally:
        client.stop_stream()
    return {"bad_at": bad_at, "responses": received}


def errors(
    client: grpcclient.InferenceServerClient, model: str, images: NDArray[Any]
) -> dict[str, Any]:
    """The status and message of each kind of bad request, as tritonclient reports them."""
    two = images[:2]
    short = tensor_input(two)
    # The declared shape says one image while the raw bytes hold two.
    short.set_shape([1, *two.shape[1:]])
    wrong_dtype = two.astype(np.float64)
    return {
        "wrong_shape": error_of(lambda: client.infer(model, [tensor_input(two[:, :-1, :])])),
        "wrong_datatype": error_of(lambda: client.infer(model, [tensor_input(wrong_dtype)])),
        "byte_size": error_of(lambda: client.infer(model, [short])),
        "unknown_model": error_of(lambda: client.infer("no-such-model", [tensor_input(two)])),
        "unknown_version": error_of(
            lambda: client.infer(model, [tensor_input(two)], model_version="999999")
        ),
        "unknown_input": error_of(lambda: client.infer(model, [tensor_input(two, "pixels")])),
        "unknown_output": error_of(
            lambda: client.infer(
                model, [tensor_input(two)], outputs=[grpcclient.InferRequestedOutput("logits")]
            )
        ),
        "unknown_model_metadata": error_of(lambda: client.get_model_metadata("no-such-model")),
    }


def classification(
    client: grpcclient.InferenceServerClient, model: str, images: NDArray[Any]
) -> dict[str, Any]:
    """Top-3 classes of each image by probabilities and by scores (Triton's class_count)."""
    requested = [
        grpcclient.InferRequestedOutput("probabilities", class_count=3),
        grpcclient.InferRequestedOutput("scores", class_count=3),
    ]
    result = client.infer(model, [tensor_input(images)], outputs=requested)
    return {
        "outputs": outputs_of(result),
        "probabilities": [[v.decode() for v in row] for row in result.as_numpy("probabilities")],
        "scores": [[v.decode() for v in row] for row in result.as_numpy("scores")],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="HOST:PORT of the server")
    parser.add_argument("--model", required=True, help="the model name the server serves")
    parser.add_argument("--images", required=True, help=".npy file of images [N,H,W]")
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()
    images = np.load(args.images)
    with grpcclient.InferenceServerClient(args.target) as client:
        version = client.get_model_metadata(args.model).versions[0]
        report = {
            "readiness": readiness(client, args.model, version),
            "metadata": metadata(client, args.model),
            "infer": inference(client, args.model, images, args.batch_size),
            "subsets": subsets(client, args.model, images[:3]),
            "stream": streaming(client, args.model, images, args.batch_size),
            "errors": errors(client, args.model, images),
            "classification": classification(client, args.model, images[:5]),
            "config": client.get_model_config(args.model, as_json=True),
            "statistics": client.get_inference_statistics(args.model, as_json=True),
        }
    json.dump(report, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
