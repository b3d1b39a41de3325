"""The server's settings: command-line flags, each with a SCRATCHNET_<FLAG> environment variable.

A flag on the command line wins over its environment variable, which wins over the default.
A bad value in either is one line on stderr (naming the flag or the variable) and exit code 2.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scratchnet.cli import ArgumentParser, integer
from scratchnet.contract import (
    DEFAULT_HOST,
    DEFAULT_MAX_BATCH,
    DEFAULT_MODEL,
    DEFAULT_MODEL_NAME,
    DEFAULT_PORT,
)

__all__ = ["ServerConfig", "parse_config"]

LOG_LEVELS = ("debug", "info", "warning", "error")
# grpc measures message sizes in an int32 of bytes.
_MAX_MESSAGE_MB_LIMIT = 2047


@dataclass(frozen=True)
class ServerConfig:
    """Everything `python -m server` is told."""

    model: Path
    host: str
    port: int
    model_name: str
    max_batch: int
    threads: int
    workers: int
    max_queue: int
    max_message_mb: int
    grace_seconds: float
    log_level: str
    http_port: int | None = None
    """The HTTP/REST port (the Open Inference Protocol and the playground); None: no HTTP."""

    @property
    def max_message_bytes(self) -> int:
        """--max-message-mb in bytes: the largest request or response grpc lets through."""
        return self.max_message_mb * 1024 * 1024

    @property
    def http_address(self) -> str:
        """HOST:HTTP_PORT to listen on for HTTP (with --http-port given)."""
        return self.address_with(self.http_port or 0)

    @property
    def address(self) -> str:
        """HOST:PORT to listen on, with an IPv6 host in brackets."""
        return self.address_with(self.port)

    def address_with(self, port: int) -> str:
        """HOST:`port`, e.g. the port --port 0 picked."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{port}"


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def _name(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a non-empty name")
    return text


def _port_or_off(text: str) -> int | None:
    if text.strip().lower() == "off":
        return None
    return integer(0, 65535)(text)


def _level(text: str) -> str:
    if text.lower() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(LOG_LEVELS)}, got {text!r}")
    return text.lower()


# flag -> (parser, default, help); the environment variable is SCRATCHNET_<FLAG>.
_FLAGS: dict[str, tuple[Callable[[str], Any], Any, str]] = {
    "model": (Path, DEFAULT_MODEL, "the ONNX model to serve"),
    "host": (
        _name,
        DEFAULT_HOST,
        "address to listen on; 0.0.0.0 or :: exposes the server to the "
        "network (no TLS, no authentication)",
    ),
    "port": (integer(0, 65535), DEFAULT_PORT, "port to listen on; 0 picks a free one"),
    "model-name": (_name, DEFAULT_MODEL_NAME, "name the model is served under"),
    "max-batch": (integer(1), DEFAULT_MAX_BATCH, "most images one request may carry"),
    "threads": (integer(0), 0, "onnxruntime intra-op threads per inference (0: one per core)"),
    "workers": (integer(1), 8, "gRPC worker threads: calls handled at the same time"),
    "max-queue": (
        integer(0),
        32,
        "calls waiting for a worker before new ones get RESOURCE_EXHAUSTED",
    ),
    "max-message-mb": (
        integer(1, _MAX_MESSAGE_MB_LIMIT),
        64,
        "largest request or response in MiB; bigger gets RESOURCE_EXHAUSTED",
    ),
    "grace-seconds": (
        _seconds,
        10.0,
        "on SIGTERM/SIGINT, how long calls in flight may take to finish before they are cancelled",
    ),
    "log-level": (_level, "info", f"log verbosity on stderr: {', '.join(LOG_LEVELS)}"),
    "http-port": (
        _port_or_off,
        "off",
        "also serve HTTP/REST (the Open Inference Protocol and the playground at /) on this "
        "port, on --host; 0 picks a free one; needs the http extra",
    ),
}


def environment_variable(flag: str) -> str:
    """The environment variable that sets `flag`: SCRATCHNET_MAX_BATCH for max-batch."""
    return "SCRATCHNET_" + flag.upper().replace("-", "_")


def parse_config(argv: Sequence[str], environ: Mapping[str, str], prog: str) -> ServerConfig:
    """Read flags from `argv` over environment variables over defaults; exit 2 on a bad value."""
    parser = ArgumentParser(
        prog=prog,
        description="Serve an ONNX image classifier over gRPC (scratchnet.v1.Classifier and the "
        "Open Inference Protocol) with health checking and reflection.",
        epilog="Every flag can also be set by an environment variable SCRATCHNET_<FLAG>, "
        "e.g. SCRATCHNET_PORT=50052; a flag given on the command line wins.",
    )
    for flag, (parse, default, help_text) in _FLAGS.items():
        variable = environment_variable(flag)
        if variable in environ:
            try:
                default = parse(environ[variable])
            except argparse.ArgumentTypeError as error:
                parser.error(f"environment variable {variable}: {error}")
        parser.add_argument(
            f"--{flag}",
            type=parse,
            default=default,
            metavar=flag.split("-")[-1].upper(),
            help=f"{help_text} (default: {default}; env {variable})",
        )
    args = parser.parse_args(argv)
    return ServerConfig(
        **{flag.replace("-", "_"): getattr(args, flag.replace("-", "_")) for flag in _FLAGS}
    )
