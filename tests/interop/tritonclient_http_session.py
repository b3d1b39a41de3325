"""Talk to a running scratchnet server with the official `tritonclient.http` and print what it saw.

    python tests/interop/tritonclient_http_session.py --url HOST:PORT --model NAME --images X.npy

Prints one JSON object on stdout: readiness, metadata, the labels of every image in X.npy sent
as binary tensors (tritonclient's default), the outputs of the first images sent as JSON tensors
with JSON outputs, mixed, and the errors of bad requests as `{"status": ..., "message": ...}`.
Like tritonclient_session.py it runs in a subprocess and imports only tritonclient and numpy.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import tritonclient.http as httpclient
from numpy.typing import NDArray
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

INPUT = "images"
OUTPUTS = ("label", "scores", "probabilities")


def error_of(call: Callable[[], object]) -> dict[str, Any]:
    """Run `call`, which must fail, and return its status and message (or what it returned)."""
    try:
        returned = call()
    except InferenceServerException as error:
        return {"status": error.status(), "message": error.message()}
    return {"status": None, "message": None, "returned": repr(returned)}


def tensor_input(
    images: NDArray[Any], binary: bool = True, name: str = INPUT
) -> httpclient.InferInput:
    """An InferInput carrying `images`, as binary data or as JSON."""
    infer_input = httpclient.InferInput(name, list(images.shape), np_to_triton_dtype(images.dtype))
    infer_input.set_data_from_numpy(images, binary_data=binary)
    return infer_input


def outputs(result: httpclient.InferResult) -> dict[str, Any]:
    """Every output of a result: values, and whether it came as binary data."""
    found = {}
    for output in result.get_response()["outputs"]:
        found[output["name"]] = {
            "datatype": output["datatype"],
            "shape": output["shape"],
            "binary": "binary_data_size" in output.get("parameters", {}),
            "values": result.as_numpy(output["name"]).tolist(),
        }
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="HOST:PORT of the server's HTTP port")
    parser.add_argument("--model", required=True)
    parser.add_argument("--images", required=True, help=".npy file of images [N,H,W]")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--json-images", type=int, default=100)
    args = parser.parse_args()
    images = np.load(args.images)
    model = args.model
    with httpclient.InferenceServerClient(args.url, network_timeout=120.0) as client:
        version = client.get_model_metadata(model)["versions"][0]
        labels: list[int] = []
        for start in range(0, len(images), args.batch_size):
            batch = images[start : start + args.batch_size]
            result = client.infer(model, [tensor_input(batch)], request_id=f"batch-{start}")
            labels.extend(result.as_numpy("label").tolist())
        first = images[: args.json_images]
        as_json = client.infer(
            model,
            [tensor_input(first, binary=False)],
            outputs=[httpclient.InferRequestedOutput(name, binary_data=False) for name in OUTPUTS],
            request_id="json",
        )
        as_binary = client.infer(model, [tensor_input(first)], request_id="binary")
        mixed = client.infer(
            model,
            [tensor_input(first)],
            outputs=[
                httpclient.InferRequestedOutput("label", binary_data=False),
                httpclient.InferRequestedOutput("probabilities", binary_data=True),
            ],
        )
        two = images[:2]
        report = {
            "readiness": {
                "server_live": client.is_server_live(),
                "server_ready": client.is_server_ready(),
                "model_ready": client.is_model_ready(model),
                "model_version_ready": client.is_model_ready(model, version),
                "unknown_model_ready": client.is_model_ready("no-such-model"),
            },
            "server_metadata": client.get_server_metadata(),
            "model_metadata": client.get_model_metadata(model),
            "labels": labels,
            "json": {"id": as_json.get_response().get("id"), "outputs": outputs(as_json)},
            "binary": {"id": as_binary.get_response().get("id"), "outputs": outputs(as_binary)},
            "mixed": outputs(mixed),
            "errors": {
                "wrong_shape": error_of(lambda: client.infer(model, [tensor_input(two[:, :-1])])),
                "unknown_model": error_of(
                    lambda: client.infer("no-such-model", [tensor_input(two)])
                ),
                "unknown_version": error_of(
                    lambda: client.infer(model, [tensor_input(two)], model_version="999")
                ),
                "model_config": error_of(lambda: client.get_model_config("no-such-model")),
            },
        }  # fmt: skip
    json.dump(report, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
