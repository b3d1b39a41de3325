"""Errors a user can cause.

    ScratchnetError          anything wrong with the user's input (files, flags, data)
    ├── DataError            a data set that is missing, malformed or inconsistent
    └── ArtifactError        a trainer artifact that is missing, malformed or inconsistent

Other packages (export, server, clients) subclass ScratchnetError for their own kinds;
`trainer.cli.run_cli` turns any of them into one line on stderr and a non-zero exit.
"""

from __future__ import annotations

__all__ = ["ArtifactError", "DataError", "ScratchnetError"]


class ScratchnetError(Exception):
    """A user mistake; its message is one line saying what was wrong and what was expected."""


class DataError(ScratchnetError):
    """A data set that cannot be used."""


class ArtifactError(ScratchnetError):
    """A trainer artifact that cannot be used."""
