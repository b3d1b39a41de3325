"""Atomic file writes: a crash or an error never leaves a half-written output behind."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from trainer.errors import ScratchnetError

__all__ = ["atomic_write"]


@contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces `path` only when the block completes without error.

    The data goes to a hidden temporary file in the same directory (so the final rename is atomic
    on POSIX), is flushed and fsynced, then renamed over `path`. On any exception the temporary
    file is removed and `path` is left as it was; a killed process can leave only the hidden
    `.NAME.*.tmp` file, never a partial `path`.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
        )
    except (FileExistsError, NotADirectoryError):
        # What mkdir(exist_ok=True) raises when a part of the folder path is a file.
        raise ScratchnetError(
            f"cannot write {target}: {target.parent} is not a folder (part of that path is a file)"
        ) from None
    except OSError as error:
        raise ScratchnetError(f"cannot write {target}: {error.strerror or error}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            try:
                handle.flush()
                os.fsync(handle.fileno())
                os.chmod(temp_name, 0o644)
                os.replace(temp_name, target)
            except OSError as error:
                raise ScratchnetError(f"cannot write {target}: {error.strerror or error}") from None
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
