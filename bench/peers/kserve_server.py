"""KServe's Python model server (the `kserve` package) serving model.onnx over its gRPC Open
Inference Protocol endpoint: a small custom kserve.Model whose predict runs onnxruntime, the way
KServe's docs write one. Runs in build/peers-venv (`make bench-peers`), not scratchnet's venv.

    build/peers-venv/bin/python bench/peers/kserve_server.py --model artifacts/model.onnx --port 0

KServe's defaults otherwise (one process, 4 gRPC threads, a log line per request), except that
its gRPC and REST servers listen on --host, not on every interface. Prints `listening on` for
the gRPC port and `http listening on` for the REST port.
"""

from __future__ import annotations

import argparse
import socket
import sys
from typing import Any

import numpy as np
import onnxruntime as ort

# KServe parses sys.argv when imported, and would take our --model for its --model_name.
_ARGS = sys.argv[1:]
sys.argv = sys.argv[:1]

import kserve  # type: ignore[import-not-found]  # noqa: E402
import kserve.protocol.grpc.server as kserve_grpc  # type: ignore[import-not-found]  # noqa: E402
import uvicorn  # noqa: E402
from kserve import InferOutput, InferRequest, InferResponse  # noqa: E402

DATATYPES = {"tensor(float)": "FP32", "tensor(uint8)": "UINT8"}


class OnnxModel(kserve.Model):  # type: ignore[misc]
    """One ONNX classifier: images in, label and scores out."""

    def __init__(self, name: str, path: str, threads: int) -> None:
        super().__init__(name)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0]
        self.classes = int(self.session.get_outputs()[0].shape[-1])
        self.ready = True

    def get_input_types(self) -> list[dict[str, Any]]:
        """What ModelMetadata reports for the input."""
        shape = [-1, *self.input.shape[1:]]
        return [{"name": self.input.name, "datatype": DATATYPES[self.input.type], "shape": shape}]

    def get_output_types(self) -> list[dict[str, Any]]:
        """What ModelMetadata reports for the outputs."""
        return [
            {"name": "label", "datatype": "INT64", "shape": [-1]},
            {"name": "scores", "datatype": "FP32", "shape": [-1, self.classes]},
        ]

    def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> Any:
        """Run the session on the request's one input."""
        images = payload.inputs[0].as_numpy()
        label, scores = self.session.run(["label", "scores"], {self.input.name: images})
        outputs = [
            InferOutput("label", list(label.shape), "INT64", np.asarray(label)),
            InferOutput("scores", list(scores.shape), "FP32", np.asarray(scores)),
        ]
        return InferResponse(payload.id, self.name, outputs)


def listen_on(host: str) -> None:
    """Make KServe's gRPC ("[::]:PORT") and REST ("0.0.0.0") servers listen on `host` only."""
    make_server = kserve_grpc.aio.server

    class Aio:
        @staticmethod
        def server(*args: Any, **kwargs: Any) -> Any:
            server = make_server(*args, **kwargs)
            add_port = server.add_insecure_port
            server.add_insecure_port = lambda address: add_port(address.replace("[::]", host))
            return server

    class Config(uvicorn.Config):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{**kwargs, "host": host})

    kserve_grpc.aio = Aio
    uvicorn.Config = Config  # type: ignore[misc]


def free_port(host: str) -> int:
    """A port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--model-name", default="scratchnet")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--http-port", type=int, default=0, help="the REST port (0: a free one)")
    args = parser.parse_args(_ARGS)
    listen_on(args.host)
    port = args.port or free_port(args.host)
    http_port = args.http_port or free_port(args.host)
    model = OnnxModel(args.model_name, args.model, args.threads)
    # The lines scratchnet.launcher reads, as `python -m server --http-port` prints them.
    print(f"listening on {args.host}:{port}", flush=True)
    print(f"http listening on {args.host}:{http_port}", flush=True)
    kserve.ModelServer(grpc_port=port, http_port=http_port).start([model])
