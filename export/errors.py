"""The exporter's error: anything that stops an export or a parity check.

    trainer.errors.ScratchnetError
    └── ExportError      a bad option, a model that fails validation, an output that cannot be
                         written, or a model that --check cannot run

`trainer.cli.run_cli` turns it into one line on stderr and a non-zero exit.
"""

from __future__ import annotations

from trainer.errors import ScratchnetError

__all__ = ["ExportError"]


class ExportError(ScratchnetError):
    """An export or a check that cannot go ahead; the message says what and what was expected."""
