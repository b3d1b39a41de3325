"""The server's settings: command-line flags, each with a SCRATCHNET_<FLAG> environment variable.

A flag on the command line wins over its environment variable, which wins over the default.
A bad value in either is one line on stderr (naming the flag or the variable) and exit code 2.
"""

from __future__ import annotations

import argparse
import math
import os
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
    MODEL_NAME,
    MODEL_NAME_RULE,
)

__all__ = ["ServerConfig", "parse_config"]

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
CONTROL_MODES = ("none", "poll", "explicit")
_CORES = max(1, len(os.sched_getaffinity(0)))
MAX_THREADS = 256
"""The most --threads and --workers take: each is a thread (--threads per model), and a typo of
100000 would start threads until the machine's process limit stops every other program."""
# grpc measures message sizes in an int32 of bytes.
_MAX_MESSAGE_MB_LIMIT = 2047


@dataclass(frozen=True)
class ServerConfig:
    """Everything `python -m server` is told."""

    model: Path | None
    """The one ONNX file to serve; None when a model repository is served instead."""
    model_repository: Path | None
    model_control_mode: str
    repository_poll_secs: float
    load_model: tuple[str, ...]
    image_shape: tuple[int, int] | None
    host: str
    port: int
    model_name: str
    max_batch: int
    threads: int
    workers: int
    max_queue: int
    inline_us: int
    max_inflight_mb: int
    request_timeout: float
    max_concurrent_rpcs: int
    upload_seconds: float
    stream_idle_seconds: float
    dynamic_batching: bool
    max_batch_delay_us: int
    preferred_batch_sizes: tuple[int, ...]
    grpc_max_concurrent_streams: int
    grpc_keepalive_time: int
    grpc_keepalive_timeout: int
    grpc_keepalive_permit_without_calls: bool
    grpc_http2_max_pings_without_data: int
    grpc_http2_min_recv_ping_interval_without_data: int
    grpc_http2_max_ping_strikes: int
    grpc_max_connection_idle: int
    grpc_max_connection_age: int
    grpc_max_connection_age_grace: int
    max_message_mb: int
    grace_seconds: float
    log_level: str
    log_format: str
    access_log: bool
    metrics_port: int | None
    tls_cert: Path | None
    tls_key: Path | None
    tls_client_ca: Path | None
    auth_token_file: Path | None
    no_reflection: bool
    no_malloc_tuning: bool
    no_shared_memory: bool
    expose_versions: bool
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


def _seconds(text: str, positive: bool = False) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0) or (positive and value == 0):
        least = "> 0" if positive else ">= 0"
        raise argparse.ArgumentTypeError(f"expected a number of seconds {least}, got {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    return _seconds(text, positive=True)


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        sizes = (0,)
    if any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError(f"expected sizes >= 1 separated by commas, got {text!r}")
    return sizes


def _names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise argparse.ArgumentTypeError("expected model names separated by commas, or '*'")
    return names


def _mode(text: str) -> str:
    if text.lower() not in CONTROL_MODES:
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(CONTROL_MODES)}, got {text!r}"
        )
    return text.lower()


def _image_shape(text: str) -> tuple[int, int]:
    parts = text.lower().replace(" ", "").split("x")
    if len(parts) != 2 or not all(part.isdigit() and int(part) > 0 for part in parts):
        raise argparse.ArgumentTypeError(f"expected HxW such as 28x28, got {text!r}")
    return int(parts[0]), int(parts[1])


def _switch(text: str) -> bool:
    """A boolean environment value: 1/true/yes/on or 0/false/no/off."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _name(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a non-empty name")
    return text


def _model_name(text: str) -> str:
    if not MODEL_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"expected {MODEL_NAME_RULE} (the name is a segment of the HTTP paths), got {text!r}"
        )
    return text


def _log_format(text: str) -> str:
    if text.lower() not in LOG_FORMATS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(LOG_FORMATS)}, got {text!r}")
    return text.lower()


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
    "model": (
        Path,
        None,
        f"the one ONNX model to serve (default: {DEFAULT_MODEL}, unless --model-repository)",
    ),
    "model-repository": (
        Path,
        None,
        "serve a Triton model repository: DIR/<model>/[config.pbtxt], DIR/<model>/<version>/"
        "model.onnx",
    ),
    "model-control-mode": (
        _mode,
        "none",
        "none: load every model at start; poll: also follow the files' changes; explicit: load "
        "the --load-model ones, then what RepositoryModelLoad/Unload ask (SIGHUP reloads in all)",
    ),
    "repository-poll-secs": (_positive_seconds, 5.0, "with poll: seconds between two scans"),
    "load-model": (
        _names,
        None,
        "with explicit: models to load at start, separated by commas ('*': all)",
    ),
    "image-shape": (
        _image_shape,
        None,
        "for the v1 API, HxW of the images of models whose input is flat [N,H·W], used only "
        "when the model's metadata or config does not give it",
    ),
    "host": (
        _name,
        DEFAULT_HOST,
        "address to listen on; 0.0.0.0 or :: exposes the server to the "
        "network (without --tls-cert and --auth-token-file: no TLS, no authentication)",
    ),
    "port": (integer(0, 65535), DEFAULT_PORT, "port to listen on; 0 picks a free one"),
    "model-name": (
        _model_name,
        DEFAULT_MODEL_NAME,
        "name the --model file is served under, and the model v1 requests that name none go to",
    ),
    "max-batch": (
        integer(1),
        DEFAULT_MAX_BATCH,
        "most items one request may carry, for models whose config.pbtxt sets no max_batch_size",
    ),
    "threads": (
        integer(0, MAX_THREADS),
        0,
        "onnxruntime intra-op threads per inference (0: one per core)",
    ),
    "workers": (
        integer(1, MAX_THREADS),
        min(_CORES, MAX_THREADS),
        "inference threads: model runs at the same time besides the small ones the event loop "
        "runs itself",
    ),
    "max-queue": (
        integer(1),
        256,
        "model runs waiting for an inference thread (or in a model's batching queue) before new "
        "ones get RESOURCE_EXHAUSTED",
    ),
    "inline-us": (
        integer(0),
        1000,
        "model runs expected to take less (from the model's measured speed) run on the event "
        "loop itself, without a thread hand-off; 0: every run goes to the inference threads",
    ),
    "max-inflight-mb": (
        integer(1),
        256,
        "memory budget of the requests in flight, in MiB of decoded inputs, checked from their "
        "declared shapes before any payload is decoded; past it, RESOURCE_EXHAUSTED",
    ),
    "request-timeout": (
        _positive_seconds,
        60.0,
        "the server's own deadline for a request, in seconds (a client's shorter one wins)",
    ),
    "max-concurrent-rpcs": (
        integer(1),
        4096,
        "calls open at once (streams included); past it, RESOURCE_EXHAUSTED",
    ),
    "upload-seconds": (
        _seconds,
        30.0,
        "how long a call may take to send its request message before it is closed; 0: no limit",
    ),
    "stream-idle-seconds": (
        _positive_seconds,
        60.0,
        "how long a stream may stay without a request before it is closed",
    ),
    "dynamic-batching": (
        _switch,
        False,
        "batch the waiting requests of every batching model together (models whose "
        "config.pbtxt has dynamic_batching batch anyway)",
    ),
    "max-batch-delay-us": (
        integer(0),
        0,
        "with --dynamic-batching: how long a request may wait for others to batch with",
    ),
    "preferred-batch-sizes": (
        _sizes,
        (),
        "with --dynamic-batching: batch sizes to run at once when reached, e.g. 16,32",
    ),
    # As many as the whole server takes: a client that opens more streams on a new connection
    # than this, before it has learnt the limit, has the extra ones refused (REFUSED_STREAM),
    # which grpc clients retry only for requests under 256 KB and otherwise fail UNAVAILABLE.
    "grpc-max-concurrent-streams": (
        integer(1),
        4096,
        "calls open at once on one connection (beyond it, a client's further calls wait)",
    ),
    "grpc-keepalive-time": (integer(1), 7_200_000, "ms between keepalive pings a server sends"),
    "grpc-keepalive-timeout": (integer(1), 20_000, "ms to wait for a keepalive ping's answer"),
    "grpc-keepalive-permit-without-calls": (
        _switch,
        False,
        "let clients send keepalive pings on a connection without calls",
    ),
    "grpc-http2-max-pings-without-data": (
        integer(0),
        2,
        "pings a server sends without data before it stops pinging (0: no limit)",
    ),
    "grpc-http2-min-recv-ping-interval-without-data": (
        integer(0),
        300_000,
        "ms a client must leave between pings without data; closer ones are strikes",
    ),
    "grpc-http2-max-ping-strikes": (
        integer(0),
        2,
        "strikes before a client's connection is closed (0: no limit)",
    ),
    "grpc-max-connection-idle": (
        integer(0),
        0,
        "ms a connection without calls stays open (0: for ever)",
    ),
    "grpc-max-connection-age": (
        integer(0),
        0,
        "ms before a connection is asked to go away, so that clients rebalance (0: never)",
    ),
    "grpc-max-connection-age-grace": (
        integer(0),
        0,
        "ms a connection past its age keeps for its calls to finish (0: for ever)",
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
    "log-format": (
        _log_format,
        "text",
        "log lines on stderr: text, or json (one object per line); access lines included",
    ),
    "access-log": (
        _switch,
        True,
        "log one line per inference call at INFO (about 40 µs of CPU per call, "
        "docs/performance.md)",
    ),
    "metrics-port": (
        _port_or_off,
        "off",
        "serve Prometheus metrics over HTTP on this port of --host (Triton uses 8002; TLS and "
        "tokens as the gRPC port); 0 picks a free one",
    ),
    "tls-cert": (
        Path,
        None,
        "serve TLS with this PEM certificate chain (with --tls-key); SIGHUP reads the TLS files "
        "again",
    ),
    "tls-key": (Path, None, "the PEM private key of --tls-cert"),
    "tls-client-ca": (
        Path,
        None,
        "mutual TLS: accept only clients with a certificate this PEM CA signed",
    ),
    "auth-token-file": (
        Path,
        None,
        "require 'authorization: Bearer <token>' with a token from this file (one per line, "
        "read again at SIGHUP); health checks stay open",
    ),
    "no-reflection": (_switch, False, "do not serve gRPC reflection"),
    "no-shared-memory": (
        _switch,
        False,
        "refuse Triton's system shared-memory extension (clients on this host passing tensors "
        "through /dev/shm)",
    ),
    "no-malloc-tuning": (
        _switch,
        False,
        "leave glibc's allocator as it is (by default it keeps multi-MB buffers for reuse; "
        "see docs/performance.md)",
    ),
    "expose-versions": (
        _switch,
        False,
        "show the software versions a model was trained with (metadata versions.*) to clients",
    ),
    "http-port": (
        _port_or_off,
        "off",
        "also serve HTTP/REST (the Open Inference Protocol and the playground at /) on this "
        "port, on --host (TLS and tokens as the gRPC port); 0 picks a free one; needs the "
        "http extra",
    ),
}


def environment_variable(flag: str) -> str:
    """The environment variable that sets `flag`: SCRATCHNET_MAX_BATCH for max-batch."""
    return "SCRATCHNET_" + flag.upper().replace("-", "_")


def parse_config(argv: Sequence[str], environ: Mapping[str, str], prog: str) -> ServerConfig:
    """Read flags from `argv` over environment variables over defaults; exit 2 on a bad value."""
    parser = ArgumentParser(
        prog=prog,
        description="Serve ONNX models over gRPC (the Open Inference Protocol, and "
        "scratchnet.v1.Classifier for image classifiers) with health checking and reflection: "
        "one file (--model) or a Triton model repository (--model-repository).",
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
        if parse is _switch:
            # --x and --no-x, so that the command line can undo SCRATCHNET_X=1 ("no-" flags
            # only turn things off).
            parser.add_argument(
                f"--{flag}",
                action="store_true" if flag.startswith("no-") else argparse.BooleanOptionalAction,
                default=default,
                help=f"{help_text} (env {variable})",
            )
            continue
        parser.add_argument(
            f"--{flag}",
            type=parse,
            default=default,
            metavar=flag.split("-")[-1].upper(),
            help=f"{help_text} ({'' if default is None else f'default: {default}; '}env "
            f"{variable})",
        )
    args = parser.parse_args(argv)
    values = {flag.replace("-", "_"): getattr(args, flag.replace("-", "_")) for flag in _FLAGS}
    if values["model"] is not None and values["model_repository"] is not None:
        parser.error("--model and --model-repository: give one, not both")
    if values["model"] is None and values["model_repository"] is None:
        values["model"] = DEFAULT_MODEL
    if values["load_model"] is not None and values["model_control_mode"] != "explicit":
        parser.error("--load-model is only used with --model-control-mode explicit")
    values["load_model"] = values["load_model"] or ()
    if (values["tls_cert"] is None) != (values["tls_key"] is None):
        parser.error("--tls-cert and --tls-key go together: give both or neither")
    if values["tls_client_ca"] is not None and values["tls_cert"] is None:
        parser.error("--tls-client-ca needs --tls-cert and --tls-key (mutual TLS is TLS)")
    if not values["dynamic_batching"] and (
        values["max_batch_delay_us"] or values["preferred_batch_sizes"]
    ):
        parser.error(
            "--max-batch-delay-us and --preferred-batch-sizes are only used with --dynamic-batching"
        )
    too_large = [size for size in values["preferred_batch_sizes"] if size > values["max_batch"]]
    if too_large:
        parser.error(
            f"--preferred-batch-sizes {too_large[0]} is over --max-batch {values['max_batch']}: "
            f"expected sizes from 1 to {values['max_batch']}, as Triton requires"
        )
    return ServerConfig(**values)
