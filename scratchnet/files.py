"""Atomic file and folder writes: a crash or an error never leaves a half-written output behind."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TypeVar

from scratchnet.errors import ModelError, ScratchnetError

__all__ = [
    "Identity",
    "atomic_directory",
    "atomic_write",
    "check_writable",
    "identity",
    "not_a_file",
    "require_model_file",
]

_Made = TypeVar("_Made")
Identity = tuple[int, int, int]
"""A file's identity for change detection: its inode, size and modification time."""


def identity(path: str | os.PathLike[str]) -> Identity:
    """`path`'s inode, size and modification time; (0, 0, 0) when it cannot be read."""
    try:
        info = os.stat(path)
    except OSError:
        return (0, 0, 0)
    return (info.st_ino, info.st_size, info.st_mtime_ns)


def check_writable(path: str | os.PathLike[str]) -> None:
    """Fail now, before any work, if atomic_write(path) could not write there; creates nothing."""
    target = _file_target(path)
    folder = target.parent
    while not folder.exists():  # ends at "." or "/" at the latest, which exist
        folder = folder.parent
    if not folder.is_dir():
        raise ScratchnetError(
            f"cannot write {target}: {folder} is not a folder (part of that path is a file)"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ScratchnetError(f"cannot write {target}: folder {folder} is not writable")


@contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces `path` only when the block completes without error.

    The data goes to a hidden temporary file in the same directory (so the final rename is atomic
    on POSIX), is flushed and fsynced, then renamed over `path`. On any exception the temporary
    file is removed and `path` is left as it was; a killed process can leave only the hidden
    `.NAME.*.tmp` file, never a partial `path`. An OSError, in the caller's block (a full disk)
    or in those last steps, becomes a one-line ScratchnetError.
    """
    target = _file_target(path)
    fd, temp_name = _beside(target, tempfile.mkstemp)
    try:
        with os.fdopen(fd, "wb") as handle:
            try:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
                os.chmod(temp_name, 0o644)
                os.replace(temp_name, target)
            except OSError as error:
                raise _write_failed(target, error) from None
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty folder whose contents replace folder `path` only when the block completes.

    Like atomic_write, for outputs made of several files (a Parquet data set): the files go to a
    hidden `.NAME.*.tmp` folder beside `path`, which is renamed to `path` at the end. A previous
    folder at `path` is renamed aside first and then deleted, so `path` is always either the old
    output, absent for an instant, or the new one, never a mix.
    """
    target = Path(path)
    temp = Path(_beside(target, tempfile.mkdtemp))
    old = temp.with_suffix(".old")
    try:
        yield temp
        os.chmod(temp, 0o755)
        if target.is_dir():
            os.replace(target, old)
        os.replace(temp, target)
    except OSError as error:
        raise _write_failed(target, error) from None
    finally:
        shutil.rmtree(temp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def _write_failed(target: Path, error: OSError) -> ScratchnetError:
    """A write that failed once under way (a full disk, an I/O error): the job failed (exit 1),
    unlike a path refused before any work, the caller's mistake (exit 2)."""
    failed = ScratchnetError(f"cannot write {target}: {error.strerror or error}")
    failed.failure = True
    return failed


def not_a_file(path: str | os.PathLike[str]) -> str:
    """Why `path` cannot be read as a file, for a message: "not found", "is a directory" or
    "is not a regular file (a device, FIFO or socket)"."""
    target = Path(path)
    if target.is_dir():
        return "is a directory"
    if target.exists():
        return "is not a regular file (a device, FIFO or socket)"
    return "not found"


def require_model_file(path: str | os.PathLike[str], where: str) -> None:
    """ModelError unless `path` is a regular file, which a model can be loaded from."""
    if not Path(path).is_file():
        raise ModelError(
            f"{where} {not_a_file(path)}, expected an ONNX file (export one with "
            "`python -m export`)"
        )


def _file_target(path: str | os.PathLike[str]) -> Path:
    """The file that writing `path` replaces: a symbolic link's target, written through rather
    than replaced by a file; ScratchnetError for a folder or a device, FIFO or socket, which a
    rename would replace."""
    raw = os.fspath(path)
    target = Path(raw)
    if raw.endswith("/") or target.is_dir():
        raise ScratchnetError(f"cannot write {raw}: it is a directory, expected a file path")
    if target.is_symlink():
        target = Path(os.path.realpath(target))
    if target.exists() and not target.is_file():
        raise ScratchnetError(
            f"cannot write {raw}: it is not a regular file (a device, FIFO or socket), "
            "expected a file path"
        )
    return target


def _beside(target: Path, make: Callable[..., _Made]) -> _Made:
    """Create the folders up to `target` and a hidden temporary file or folder next to it with
    `make` (tempfile.mkstemp or mkdtemp)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        return make(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except (FileExistsError, NotADirectoryError):
        # What mkdir(exist_ok=True) raises when a part of the folder path is a file.
        raise ScratchnetError(
            f"cannot write {target}: {target.parent} is not a folder (part of that path is a file)"
        ) from None
    except OSError as error:
        raise ScratchnetError(f"cannot write {target}: {error.strerror or error}") from None
