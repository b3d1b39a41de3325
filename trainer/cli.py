"""What every scratchnet command line shares: one-line errors, non-zero exits, no tracebacks."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn

from trainer.errors import ScratchnetError

__all__ = ["ArgumentParser", "EXIT_INTERRUPTED", "EXIT_USAGE", "run_cli"]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _fail(program: str, message: str, code: int) -> NoReturn:
    print(f"{program}: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad flag is reported on one line (with a pointer to --help)."""

    def error(self, message: str) -> NoReturn:
        _fail(self.prog, f"{message} (see {self.prog} --help)", EXIT_USAGE)


def run_cli(program: str, main: Callable[[], int | None]) -> NoReturn:
    """Run `main` and exit with its code; user errors and Ctrl-C become one line on stderr."""
    try:
        code = main() or 0
    except ScratchnetError as error:
        _fail(program, str(error), EXIT_USAGE)
    except KeyboardInterrupt:
        _fail(program, "interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): nothing more to say, and nothing to say it to.
        sys.stderr.close()
        raise SystemExit(1) from None
    raise SystemExit(code)
