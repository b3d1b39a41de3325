"""Drive a scratchnet server in --model-control-mode explicit with `tritonclient.grpc`'s model
repository calls, and print what it saw as one JSON object.

    python tests/interop/tritonclient_repository.py --target HOST:PORT --model NAME --other NAME

Lists the repository, loads MODEL, infers with its own input and output names (also with
class_count) on random inputs saved to --inputs, unloads it, and tries OTHER (a model that fails to
load). Like tritonclient_session.py it imports only tritonclient and numpy: tritonclient and
scratchnet's generated code both register the protobuf package `inference`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException


def index(client: grpcclient.InferenceServerClient) -> list[dict[str, Any]]:
    """The repository index as JSON rows."""
    rows: list[dict[str, Any]] = client.get_model_repository_index(as_json=True).get("models", [])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--model", required=True, help="a model of the repository to load")
    parser.add_argument("--other", required=True, help="a model of the repository that fails")
    parser.add_argument("--inputs", required=True, help=".npz to save the inputs sent to")
    args = parser.parse_args()
    report: dict[str, Any] = {}
    with grpcclient.InferenceServerClient(args.target) as client:
        report["index_before"] = index(client)
        report["ready_before"] = client.is_model_ready(args.model)
        client.load_model(args.model)
        report["ready_loaded"] = client.is_model_ready(args.model)
        metadata = client.get_model_metadata(args.model, as_json=True)
        report["metadata"] = metadata
        rng = np.random.default_rng(0)
        inputs, sent = [], {}
        for tensor in metadata["inputs"]:
            shape = [2 if int(dim) < 0 else int(dim) for dim in tensor["shape"]]
            value = rng.random(shape).astype(np.float32)
            infer_input = grpcclient.InferInput(tensor["name"], shape, tensor["datatype"])
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
            args.model, inputs, outputs=[grpcclient.InferRequestedOutput(first, class_count=2)]
        )
        report["top"] = [[value.decode() for value in row] for row in top.as_numpy(first)]
        report["index_loaded"] = index(client)
        client.unload_model(args.model)
        report["ready_unloaded"] = client.is_model_ready(args.model)
        try:
            client.load_model(args.other)
            report["other"] = {"status": None}
        except InferenceServerException as error:
            report["other"] = {"status": error.status(), "message": error.message()}
        report["index_after"] = index(client)
    json.dump(report, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
