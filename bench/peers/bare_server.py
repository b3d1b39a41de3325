"""The bare minimum: grpc.aio and onnxruntime behind the Open Inference Protocol's ModelInfer, and
nothing else (no metadata, health, validation or limits): the floor bench/serving.py measures
the real servers against. With --sync, grpc's synchronous server and a small thread pool instead
of grpc.aio (what the performance issue's study found faster for one image per call).

    python bench/peers/bare_server.py --model artifacts/model.onnx [--port 0] [--threads 1] [--sync]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import grpc.aio
import numpy as np
import onnxruntime as ort

from scratchnet.api.inference import open_inference_grpc_pb2 as pb

NUMPY: dict[str, np.dtype[Any]] = {
    "UINT8": np.dtype("u1"),
    "FP32": np.dtype("<f4"),
    "INT64": np.dtype("<i8"),
}
DATATYPES = {dtype: name for name, dtype in NUMPY.items()}
OPTIONS = [("grpc.max_receive_message_length", 64 << 20)]
SYNC_WORKERS = 4
"""Threads of the synchronous server: calls answered at once (the issue's "small thread pool")."""


def handler(session: Any, sync: bool = False) -> grpc.GenericRpcHandler[Any, Any]:
    """ModelInfer running `session` on the request's one raw input; no other method. `sync`: a
    plain function, for grpc's synchronous server, else a coroutine for grpc.aio's."""
    input_name = session.get_inputs()[0].name

    def infer(request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        tensor = request.inputs[0]
        images = np.frombuffer(request.raw_input_contents[0], NUMPY[tensor.datatype])
        names = [output.name for output in request.outputs] or ["label", "scores"]
        arrays = session.run(names, {input_name: images.reshape(tensor.shape)})
        outputs = [
            pb.ModelInferResponse.InferOutputTensor(
                name=name, datatype=DATATYPES[array.dtype], shape=array.shape
            )
            for name, array in zip(names, arrays, strict=True)
        ]
        raw = [array.tobytes() for array in arrays]
        return pb.ModelInferResponse(
            model_name=request.model_name, id=request.id, outputs=outputs, raw_output_contents=raw
        )

    async def infer_async(request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        return infer(request, context)

    method = grpc.unary_unary_rpc_method_handler(
        infer if sync else infer_async,
        pb.ModelInferRequest.FromString,
        pb.ModelInferResponse.SerializeToString,
    )
    return grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService", {"ModelInfer": method}
    )


def _session(model: str, threads: int) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


async def serve(model: str, host: str, port: int, threads: int) -> None:
    """Serve on grpc.aio until SIGTERM or SIGINT."""
    server = grpc.aio.server(options=OPTIONS)
    server.add_generic_rpc_handlers([handler(_session(model, threads))])
    port = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    print(f"listening on {host}:{port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace=5)


def serve_sync(model: str, host: str, port: int, threads: int) -> None:
    """Serve on grpc's synchronous server until SIGTERM or SIGINT."""
    server = grpc.server(ThreadPoolExecutor(SYNC_WORKERS), options=OPTIONS)
    server.add_generic_rpc_handlers([handler(_session(model, threads), sync=True)])
    port = server.add_insecure_port(f"{host}:{port}")
    server.start()
    print(f"listening on {host}:{port}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=5)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--sync", action="store_true", help="grpc's synchronous server")
    args = parser.parse_args()
    if args.sync:
        serve_sync(args.model, args.host, args.port, args.threads)
    else:
        asyncio.run(serve(args.model, args.host, args.port, args.threads))
