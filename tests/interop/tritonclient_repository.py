"""Drive a scratchnet server in --model-control-mode explicit with tritonclient's model
repository calls, over gRPC (`tritonclient.grpc`) or HTTP (`tritonclient.http`), and print what
it saw as one JSON object.

    python tests/interop/tritonclient_repository.py --protocol grpc|http --target HOST:PORT \
        --model NAME --other NAME --inputs FILE.npz

Lists the repository, loads MODEL, reads its configuration, infers with its own input and output
names (also with class_count) on random inputs saved to --inputs, reads its statistics, unloads
it (and a model the repository does not hold), and tries OTHER (a model that fails to load).
Like tritonclient_session.py it imports only tritonclient and numpy: tritonclient and
scratchnet's generated code both register the protobuf package `inference`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


def as_json(client: Any, method: str, *args: Any) -> Any:
    """What `client.method(*args)` answers, as JSON (the gRPC client's as_json; the HTTP client
    answers JSON anyway)."""
    if isinstance(client, grpcclient.InferenceServerClient):
        return getattr(client, method)(*args, as_json=True)
    return getattr(client, method)(*args)


def index(client: Any) -> list[dict[str, Any]]:
    """The repository index as JSON rows."""
    rows = as_json(client, "get_model_repository_index")
    # gRPC's answer is the message {"models": [...]}; Triton's HTTP answer is the array itself.
    return list(rows.get("models", []) if isinstance(rows, dict) else rows)


def outcome(call: Callable[[], Any]) -> dict[str, Any]:
    """{"status": None} if `call()` succeeds, else the status and message it failed with."""
    try:
        call()
    except InferenceServerException as error:
        return {"status": error.status(), "message": error.message()}
    return {"status": None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    parser.add_argument("--target", required=True, help="HOST:PORT of the protocol's port")
    parser.add_argument("--model", required=True, help="a model of the repository to load")
    parser.add_argument("--other", required=True, help="a model of the repository that fails")
    parser.add_argument("--inputs", required=True, help=".npz to save the inputs sent to")
    args = parser.parse_args()
    report: dict[str, Any] = {}
    kind: Any = grpcclient if args.protocol == "grpc" else httpclient
    with kind.InferenceServerClient(args.target) as client:
        report["index_before"] = index(client)
        report["ready_before"] = client.is_model_ready(args.model)
        client.load_model(args.model)
        report["ready_loaded"] = client.is_model_ready(args.model)
        metadata = as_json(client, "get_model_metadata", args.model)
        config = as_json(client, "get_model_config", args.model)
        report["config"] = config.get("config", config)  # gRPC wraps it in the response
        report["metadata"] = metadata
        rng = np.random.default_rng(0)
        inputs, sent = [], {}
        for tensor in metadata["inputs"]:
            shape = [2 if int(dim) < 0 else int(dim) for dim in tensor["shape"]]
            value = rng.random(shape).astype(np.float32)
            infer_input = kind.InferInput(tensor["name"], shape, tensor["datatype"])
            infer_input.set_data_from_numpy(value)
            inputs.append(infer_input)
            sent[tensor["name"]] = value
        np.savez(args.inputs, **sent)
        first = metadata["outputs"][0]["name"]
        result = client.infer(args.model, inputs)
        report["outputs"] = {
            output["name"]: result.as_numpy(output["name"]).tolist()
            for output in metadata["outputs"]
        }
        top = client.infer(
            args.model, inputs, outputs=[kind.InferRequestedOutput(first, class_count=2)]
        )
        report["top"] = [[value.decode() for value in row] for row in top.as_numpy(first)]
        report["statistics"] = as_json(client, "get_inference_statistics", args.model)
        report["index_loaded"] = index(client)
        client.unload_model(args.model)
        report["ready_unloaded"] = client.is_model_ready(args.model)
        report["index_unloaded"] = index(client)
        report["unload_unknown"] = outcome(lambda: client.unload_model("no-such-model"))
        report["other"] = outcome(lambda: client.load_model(args.other))
        report["index_after"] = index(client)
    json.dump(report, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
