"""What the client command lines share: the flags that say which server to call, how long to wait
for it, how to reach it when it is secured (TLS, mutual TLS, a bearer token) and which of its
models to ask for."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any

from clients.client import DEFAULT_TIMEOUT, MAX_TIMEOUT
from clients.credentials import TOKEN_VARIABLE, read_token
from scratchnet.cli import positive_number

__all__ = [
    "MODEL_FLAGS",
    "SECURITY_FLAGS",
    "add_model_flags",
    "add_server_flags",
    "model_options",
    "security_options",
]

SECURITY_FLAGS = ("tls_ca", "tls_cert", "tls_key", "token_file")
"""The flags of a secured server, as argparse names them."""
MODEL_FLAGS = ("model_name", "model_version")
"""The flags that choose the served model, as argparse names them."""


def add_server_flags(
    parser: argparse.ArgumentParser, timeout_help: str, required: bool = True
) -> None:
    """Add --target HOST:PORT (required unless told otherwise), --timeout SECONDS and the
    security flags --tls-ca, --tls-cert, --tls-key, --token-file."""
    parser.add_argument(
        "--target",
        required=required,
        metavar="HOST:PORT",
        help="the server; or replicas, balanced round robin: HOST:PORT,HOST:PORT,… or "
        "dns:///NAME:PORT (every address of NAME)",
    )
    parser.add_argument(
        "--timeout",
        type=_timeout,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"{timeout_help}, at most {MAX_TIMEOUT:g} (default: {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--tls-ca",
        metavar="FILE",
        help="call over TLS, trusting the CA certificate(s) in FILE (PEM)",
    )
    parser.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="client certificate (PEM) for a server with mutual TLS, with --tls-key; implies TLS",
    )
    parser.add_argument("--tls-key", metavar="FILE", help="the private key (PEM) of --tls-cert")
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help="send 'authorization: Bearer <token>' with the token in FILE (default: the "
        f"variable {TOKEN_VARIABLE}, if set)",
    )


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """Add --model-name NAME and --model-version VERSION, the server's own flag names: --model is
    clients.score's ONNX file for its Ray engine, and clients.perf's name (perf_analyzer's -m)."""
    parser.add_argument(
        "--model-name",
        metavar="NAME",
        help="the served model to ask for (default: the server's default model)",
    )
    parser.add_argument(
        "--model-version",
        metavar="VERSION",
        help="its version (default: the newest the server has ready)",
    )


def model_options(args: argparse.Namespace) -> dict[str, str]:
    """The Client keyword arguments of the model flags (model_name, model_version)."""
    return {flag: getattr(args, flag) or "" for flag in MODEL_FLAGS}


def _timeout(text: str) -> float:
    """An argparse `type`: seconds, positive and at most MAX_TIMEOUT (more overflows gRPC's
    deadlines, failing every call at once)."""
    value = positive_number(text)
    if value > MAX_TIMEOUT:
        raise argparse.ArgumentTypeError(
            f"expected at most {MAX_TIMEOUT:g} seconds (a day), got {text!r}"
        )
    return value


def security_options(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    environ: Mapping[str, str] = os.environ,
) -> dict[str, Any]:
    """The Client keyword arguments of the security flags (tls_ca, tls_cert, tls_key, token);
    --tls-cert without --tls-key (or the reverse) is a usage error."""
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together: give both or neither")
    return {
        "tls_ca": args.tls_ca,
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "token": read_token(args.token_file, environ),
    }
