"""NVIDIA PyTriton (`nvidia-pytriton`, which bundles Triton Inference Server) serving model.onnx on
Triton's gRPC port: a Python function running onnxruntime, bound with dynamic batching on. Runs in
build/peers-venv (`make bench-peers`), not scratchnet's venv.

    build/peers-venv/bin/python bench/peers/pytriton_server.py --model artifacts/model.onnx --port 0

Triton's HTTP and metrics endpoints are off; gRPC listens on --host only.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sysconfig
from typing import Any

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch  # type: ignore[import-not-found]
from pytriton.model_config import (  # type: ignore[import-not-found]
    DynamicBatcher,
    ModelConfig,
    Tensor,
)
from pytriton.triton import Triton, TritonConfig  # type: ignore[import-not-found]

DTYPES = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8}
MAX_BATCH = 1024


def free_port(host: str) -> int:
    """A port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def serve(model: str, host: str, port: int, name: str, threads: int) -> None:
    """Bind the model and serve until SIGTERM or SIGINT."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    image = session.get_inputs()[0]
    classes = int(session.get_outputs()[0].shape[-1])

    @batch  # type: ignore[untyped-decorator]
    def infer(**inputs: Any) -> dict[str, Any]:
        label, scores = session.run(["label", "scores"], {image.name: inputs[image.name]})
        return {"label": label, "scores": scores}

    config = TritonConfig(grpc_address=host, grpc_port=port, allow_http=False, allow_metrics=False)
    with Triton(config=config) as triton:
        triton.bind(
            model_name=name,
            infer_func=infer,
            inputs=[
                Tensor(name=image.name, dtype=DTYPES[image.type], shape=tuple(image.shape[1:]))
            ],
            outputs=[
                Tensor(name="label", dtype=np.int64, shape=(-1,)),
                Tensor(name="scores", dtype=np.float32, shape=(classes,)),
            ],
            config=ModelConfig(max_batch_size=MAX_BATCH, batcher=DynamicBatcher()),
        )
        triton.serve()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--model-name", default="scratchnet")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    args = parser.parse_args()
    # Triton's Python backend stub loads libpython3.X by name: make it find this interpreter's,
    # not a system one of another patch level (whose stdlib would not match).
    libdir = sysconfig.get_config_var("LIBDIR")
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(
        filter(None, [libdir, os.environ.get("LD_LIBRARY_PATH")])
    )
    # PyTriton stops Triton on KeyboardInterrupt; make SIGTERM one too.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    port = args.port or free_port(args.host)
    print(f"listening on {args.host}:{port}", flush=True)
    serve(args.model, args.host, port, args.model_name, args.threads)
