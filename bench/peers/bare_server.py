"""The bare minimum: grpc.aio and onnxruntime behind the Open Inference Protocol's ModelInfer, and
nothing else (no metadata, health, validation or limits): the floor bench/serving.py measures
the real servers against.

    python bench/peers/bare_server.py --model artifacts/model.onnx [--port 0] [--threads 1]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
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


def handler(session: Any) -> grpc.GenericRpcHandler[Any, Any]:
    """ModelInfer running `session` on the request's one raw input; no other method."""
    input_name = session.get_inputs()[0].name

    async def infer(request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
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

    method = grpc.unary_unary_rpc_method_handler(
        infer, pb.ModelInferRequest.FromString, pb.ModelInferResponse.SerializeToString
    )
    return grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService", {"ModelInfer": method}
    )


async def serve(model: str, host: str, port: int, threads: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20)])
    server.add_generic_rpc_handlers([handler(session)])
    port = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    print(f"listening on {host}:{port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace=5)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    args = parser.parse_args()
    asyncio.run(serve(args.model, args.host, args.port, args.threads))
