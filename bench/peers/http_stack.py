"""scratchnet's HTTP app (server.transports.http_app) on uvicorn's pure-Python stack — the h11
parser instead of httptools, on an asyncio loop of its own: what bench/http_serving.py compares the
server's parser with. HTTP only, no gRPC.

    .venv/bin/python bench/peers/http_stack.py --model artifacts/model.onnx --port 0 --http-port 0

Prints `listening on` and `http listening on` (the same HTTP port) for scratchnet.launcher.
"""

from __future__ import annotations

import os
import socket
import sys

import uvicorn

from server.config import parse_config
from server.dataplane import DataPlane
from server.model_control import LoadOptions, ModelControl, SingleFile
from server.repository import ModelRepository
from server.transports.http_app import build_app

if __name__ == "__main__":
    config = parse_config(sys.argv[1:], os.environ, "bench/peers/http_stack.py")
    assert config.model is not None, "serves --model only"
    plane = DataPlane(ModelRepository())
    source = SingleFile(config.model, config.model_name)
    control = ModelControl(plane.repository, source, LoadOptions(config.threads, config.max_batch))
    control.start(strict=True)
    sock = socket.create_server((config.host, config.http_port or 0))
    # As the server does (server/transports/http_app.py): no 40 ms wait for a delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    address = config.address_with(sock.getsockname()[1])
    print(f"listening on {address}\nhttp listening on {address}", flush=True)
    settings = uvicorn.Config(
        build_app(plane, config, control),
        http="h11",
        loop="asyncio",
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    uvicorn.Server(settings).run(sockets=[sock])
