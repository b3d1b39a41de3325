"""`python -m server` (console script `scratchnet-serve`): serve any ONNX model, or the models of a
Triton model repository, over gRPC and HTTP (docs/server.md)."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from scratchnet.cli import program_name, run_cli
from server.config import parse_config

PROGRAM = program_name("python -m server")


def _main() -> int:
    config = parse_config(sys.argv[1:], os.environ, PROGRAM)
    # gRPC's C core logs on its own (e.g. a second line after our "cannot listen on"); it speaks
    # only at --log-level debug unless GRPC_VERBOSITY says otherwise. It reads the variable when
    # grpc initialises, hence the import below.
    os.environ.setdefault("GRPC_VERBOSITY", "INFO" if config.log_level == "debug" else "NONE")
    from server.app import configure_logging, serve
    from server.memory import tune_allocator

    configure_logging(config.log_level, config.log_format)
    if not config.no_malloc_tuning:
        tune_allocator()  # first: before the large allocations it is for
    return serve(config)


def main() -> NoReturn:
    """Entry point: parse flags and environment, serve, exit 0 after a clean shutdown."""
    run_cli(PROGRAM, _main)


if __name__ == "__main__":
    main()
