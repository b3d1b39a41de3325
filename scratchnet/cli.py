"""What every scratchnet command line shares: one-line errors, non-zero exits, no tracebacks."""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import NoReturn

from scratchnet.errors import ScratchnetError, one_line

__all__ = [
    "COMMAND_PACKAGES",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "ArgumentParser",
    "file_path",
    "integer",
    "integers",
    "non_negative_number",
    "positive_number",
    "program_name",
    "quiet_grpc_core_in_client_commands",
    "quiet_interrupt_while_starting",
    "run_cli",
]

EXIT_FAILED = 1
"""A call or job that failed: a server down or refusing, a deadline, a wrong reply."""
EXIT_USAGE = 2
"""The caller's mistake, found before any call: a flag, a file, the environment."""
EXIT_INTERRUPTED = 130
COMMAND_PACKAGES = ("trainer", "export", "server", "clients")
"""The packages whose modules are commands (`python -m server`, `python -m clients.score`, …)."""


def program_name(module: str) -> str:
    """How the running command names itself in usage lines and errors: its console script's
    name (`scratchnet-serve`) when this process is one, else `module` ("python -m server")."""
    name = os.path.basename(sys.argv[0]) if sys.argv else ""
    return name if name.startswith("scratchnet-") else module


def _fail(program: str, message: str, code: int) -> NoReturn:
    print(f"{program}: error: {one_line(message)}", file=sys.stderr, flush=True)
    raise SystemExit(code)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad flag is reported on one line (with a pointer to --help)."""

    def error(self, message: str) -> NoReturn:
        _fail(self.prog, f"{message} (see {self.prog} --help)", EXIT_USAGE)


def integer(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse `type`: an integer from `low` to `high` (no upper bound if None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"expected an integer {bounds}, got {value}")
        return value

    return parse


def integers(low: int) -> Callable[[str], list[int]]:
    """An argparse `type`: integers >= `low` separated by commas ("0,200,1000")."""
    one = integer(low)
    return lambda text: [one(part) for part in text.split(",")]


def positive_number(text: str) -> float:
    """An argparse `type`: a finite number greater than zero."""
    value = _number(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def non_negative_number(text: str) -> float:
    """An argparse `type`: a finite number >= 0 (a warm-up of 0 is none)."""
    value = _number(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def file_path(text: str) -> str:
    """An argparse `type`: a path that is not empty (an empty one would mean no file at all)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a file path, got an empty one")
    return text


def _number(text: str) -> float:
    """`text` as a float; NaN when it is none, which every range check refuses."""
    try:
        return float(text)
    except ValueError:
        return math.nan


def quiet_interrupt_while_starting() -> None:
    """When this process is `python -m` one of COMMAND_PACKAGES (or a module of one), or one of
    scratchnet's console scripts, make Ctrl-C before run_cli starts (while the package's imports
    run) one line and EXIT_INTERRUPTED, as run_cli makes it afterwards, instead of a traceback
    from inside whichever import it landed in (scratchnet.starting calls this). A program that
    merely imports a package keeps its own SIGINT handler."""
    module = _module_run() or _console_script_run()
    if module is None or module.partition(".")[0] not in COMMAND_PACKAGES:
        return
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return  # ignored by the parent, or set already
    line = f"{program_name(f'python -m {module}')}: error: interrupted\n".encode()

    def interrupted(signum: int, frame: FrameType | None) -> None:
        os.write(2, line)
        # Not SystemExit: an import may catch BaseException, and half-imported modules have
        # nothing to clean up; no output has been written to flush.
        os._exit(EXIT_INTERRUPTED)

    global _starting_handler
    _starting_handler = interrupted
    signal.signal(signal.SIGINT, interrupted)


_starting_handler: Callable[[int, FrameType | None], None] | None = None


def quiet_grpc_core_in_client_commands() -> None:
    """When this process is a client command (`python -m clients.score`, `scratchnet-score`),
    keep gRPC's C core from logging on its own unless GRPC_VERBOSITY asks it to: a failed TLS
    handshake would add its line to the command's one-line error. grpc reads the variable when
    it is imported, so scratchnet.starting calls this first. The server sets its own from
    --log-level (server/__main__.py)."""
    module = _module_run() or _console_script_run()
    if module is not None and module.partition(".")[0] == "clients":
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")


def _module_run() -> str | None:
    """The module of `python [options] -m MODULE …` while Python is still importing its packages
    (sys.argv[0] is "-m" until then, as the docs of sys.argv say); else None."""
    if not sys.argv or sys.argv[0] != "-m":
        return None
    arguments = iter(sys.orig_argv[1:])
    for argument in arguments:
        if argument == "-m":
            return next(arguments, None)
        if argument.startswith("-m"):
            return argument[2:]
    return None


def _console_script_run() -> str | None:
    """The module a console script of scratchnet's (`scratchnet-serve`: server) runs, when this
    process is one, as `python -m` would name it; else None."""
    name = os.path.basename(sys.argv[0]) if sys.argv else ""
    if not name.startswith("scratchnet-"):
        return None
    import importlib.metadata  # here: only a process that may be one of ours pays for it

    try:
        entry_points = importlib.metadata.distribution("scratchnet").entry_points
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in entry_points:
        if entry.group == "console_scripts" and entry.name == name:
            return entry.module.removesuffix(".__main__")
    return None


def run_cli(program: str, main: Callable[[], int | None]) -> NoReturn:
    """Run `main` and exit with its code; errors and Ctrl-C become one line on stderr, exiting
    EXIT_FAILED for a failure, EXIT_USAGE for a mistake."""
    if _starting_handler is not None and signal.getsignal(signal.SIGINT) is _starting_handler:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # KeyboardInterrupt from here
    try:
        code = main() or 0
        sys.stdout.flush()  # inside the try: a closed pipe shows up here, not at exit
    except ScratchnetError as error:
        _fail(program, str(error), EXIT_FAILED if error.failure else EXIT_USAGE)
    except KeyboardInterrupt:
        _fail(program, "interrupted", EXIT_INTERRUPTED)
    except MemoryError as error:  # numpy's names the allocation: "Unable to allocate 42.6 PiB …"
        detail = f" ({error})" if str(error) else ""
        _fail(program, f"out of memory{detail}: ask for less work at once", EXIT_FAILED)
    except BrokenPipeError:
        # The reader went away (`| head`): it has what it wanted, so this is a quiet success.
        # Point stdout at /dev/null so that Python's final flush cannot fail a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    raise SystemExit(code)
