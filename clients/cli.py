"""What the client command lines share: the flags that say which server to call and how long to
wait for it."""

from __future__ import annotations

import argparse

from clients.client import DEFAULT_TIMEOUT
from scratchnet.cli import positive_number

__all__ = ["add_server_flags"]


def add_server_flags(parser: argparse.ArgumentParser, timeout_help: str) -> None:
    """Add --target HOST:PORT (required) and --timeout SECONDS to `parser`."""
    parser.add_argument("--target", required=True, metavar="HOST:PORT", help="the server")
    parser.add_argument(
        "--timeout",
        type=positive_number,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"{timeout_help} (default: {DEFAULT_TIMEOUT:g})",
    )
