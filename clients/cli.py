"""What the client command lines share: the flags that say which server to call and how long to
wait for it."""

from __future__ import annotations

import argparse

from clients.client import DEFAULT_TIMEOUT
from scratchnet.cli import positive_number

__all__ = ["add_server_flags"]


def add_server_flags(
    parser: argparse.ArgumentParser, timeout_help: str, required: bool = True
) -> None:
    """Add --target HOST:PORT (required unless told otherwise) and --timeout SECONDS."""
    parser.add_argument(
        "--target",
        required=required,
        metavar="HOST:PORT",
        help="the server; or replicas, balanced round robin: HOST:PORT,HOST:PORT,… or "
        "dns:///NAME:PORT (every address of NAME)",
    )
    parser.add_argument(
        "--timeout",
        type=positive_number,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"{timeout_help} (default: {DEFAULT_TIMEOUT:g})",
    )
