"""Infer through Triton's system shared-memory extension with `tritonclient.grpc` and
`tritonclient.utils.shared_memory`, and print what came back as one JSON object.

    python tests/interop/tritonclient_shm.py --target HOST:PORT --model NAME --images X.npy

The images go into one region, the scores come back in another; a region too small for them
is refused. Like the other sessions, it
imports only tritonclient and numpy (see tritonclient_session.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--images", required=True)
    args = parser.parse_args()
    images = np.load(args.images)
    suffix = uuid.uuid4().hex[:8]
    report: dict[str, object] = {}
    with grpcclient.InferenceServerClient(args.target) as client:
        inputs_region = shm.create_shared_memory_region("in", f"/sn_in_{suffix}", images.nbytes)
        metadata = client.get_model_metadata(args.model)
        scores_dims = next(o.shape for o in metadata.outputs if o.name == "scores")
        classes = int(scores_dims[-1])
        out_size = len(images) * classes * 4
        outputs_region = shm.create_shared_memory_region("out", f"/sn_out_{suffix}", out_size)
        try:
            shm.set_shared_memory_region(inputs_region, [images])
            client.register_system_shared_memory("in", f"/sn_in_{suffix}", images.nbytes)
            client.register_system_shared_memory("out", f"/sn_out_{suffix}", out_size)
            report["status"] = client.get_system_shared_memory_status(as_json=True)
            infer_input = grpcclient.InferInput("images", list(images.shape), "FP32")
            infer_input.set_shared_memory("in", images.nbytes)
            scores = grpcclient.InferRequestedOutput("scores")
            scores.set_shared_memory("out", out_size)
            label = grpcclient.InferRequestedOutput("label")
            result = client.infer(args.model, [infer_input], outputs=[scores, label])
            output = result.get_output("scores")
            values = shm.get_contents_as_numpy(outputs_region, np.float32, list(output.shape))
            report["scores"] = values.tolist()
            report["label"] = result.as_numpy("label").tolist()
            try:
                missing = grpcclient.InferInput("images", list(images.shape), "FP32")
                missing.set_shared_memory("nope", images.nbytes)
                client.infer(args.model, [missing])
                report["unknown_region"] = None
            except InferenceServerException as error:
                report["unknown_region"] = {"status": error.status(), "message": error.message()}
            try:
                short = grpcclient.InferRequestedOutput("scores")
                short.set_shared_memory("out", out_size - 4)
                client.infer(args.model, [infer_input], outputs=[short])
                report["short_region"] = None
            except InferenceServerException as error:
                report["short_region"] = {"status": error.status(), "message": error.message()}
            client.unregister_system_shared_memory()
            report["status_after"] = client.get_system_shared_memory_status(as_json=True)
        finally:
            shm.destroy_shared_memory_region(inputs_region)
            shm.destroy_shared_memory_region(outputs_region)
    json.dump(report, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
