"""scratchnet.files: atomic writes survive errors and crashes mid-write."""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from scratchnet.errors import ScratchnetError
from scratchnet.files import atomic_directory, atomic_write, check_writable


def test_writes_and_creates_folders(tmp_path: Path) -> None:
    with atomic_write(tmp_path / "a" / "b" / "out.bin") as handle:
        handle.write(b"data")
    assert (tmp_path / "a" / "b" / "out.bin").read_bytes() == b"data"
    assert (tmp_path / "a" / "b" / "out.bin").stat().st_mode & 0o777 == 0o644


def test_an_error_mid_write_leaves_the_previous_file_and_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError), atomic_write(target) as handle:
        handle.write(b"half of the new")
        raise RuntimeError("crash")
    assert target.read_bytes() == b"previous"
    assert list(tmp_path.iterdir()) == [target]


def test_an_os_error_in_the_block_is_a_one_line_error_and_no_file(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with pytest.raises(ScratchnetError) as caught, atomic_write(target) as handle:
        handle.write(b"half of the new")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert str(caught.value) == f"cannot write {target}: {os.strerror(errno.ENOSPC)}"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert caught.value.failure  # under way, after the work: the job failed (exit 1), no mistake
    assert list(tmp_path.iterdir()) == []


def test_a_killed_writer_leaves_the_previous_file_intact(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"previous")
    code = (
        "import os, signal, sys\n"
        "from scratchnet.files import atomic_write\n"
        "with atomic_write(sys.argv[1]) as handle:\n"
        "    handle.write(b'half of the new'); handle.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(target)], timeout=60)
    assert result.returncode == -signal.SIGKILL
    assert target.read_bytes() == b"previous"
    # Only a hidden temporary file can remain, never a partial file under the target's name.
    leftovers = [path.name for path in tmp_path.iterdir() if path != target]
    assert all(name.startswith(".out.bin.") and name.endswith(".tmp") for name in leftovers)


def test_an_unwritable_target_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    with (
        pytest.raises(ScratchnetError, match=r"cannot write .*folder: it is a directory"),
        atomic_write(tmp_path / "folder") as handle,
    ):
        handle.write(b"x")
    assert list((tmp_path / "folder").iterdir()) == []
    assert [path.name for path in tmp_path.iterdir()] == ["folder"]


def test_a_link_is_written_through_and_special_files_and_folders_are_refused(
    tmp_path: Path,
) -> None:
    real = tmp_path / "real.bin"
    real.write_bytes(b"old")
    (tmp_path / "link.bin").symlink_to(real)
    with atomic_write(tmp_path / "link.bin") as handle:
        handle.write(b"new")
    assert (tmp_path / "link.bin").is_symlink() and real.read_bytes() == b"new"
    os.mkfifo(tmp_path / "fifo")
    refused = {
        str(tmp_path / "fifo"): "it is not a regular file (a device, FIFO or socket)",
        f"{tmp_path / 'new'}/": "it is a directory, expected a file path",
    }
    for target, message in refused.items():
        with pytest.raises(ScratchnetError, match=re.escape(f"cannot write {target}: {message}")):
            check_writable(target)
        with pytest.raises(ScratchnetError), atomic_write(target) as handle:
            handle.write(b"x")
    assert (tmp_path / "fifo").is_fifo() and not (tmp_path / "new").exists()


def test_a_file_in_the_folder_path_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "plain").write_bytes(b"x")
    for target in (tmp_path / "plain" / "out.bin", tmp_path / "plain" / "sub" / "out.bin"):
        with pytest.raises(ScratchnetError) as caught, atomic_write(target) as handle:
            handle.write(b"x")
        assert str(caught.value) == (
            f"cannot write {target}: {target.parent} is not a folder (part of that path is a file)"
        )
    assert (tmp_path / "plain").read_bytes() == b"x"


def test_a_folder_replaces_the_earlier_one_whole(tmp_path: Path) -> None:
    target = tmp_path / "out" / "rows.parquet"
    with atomic_directory(target) as folder:
        (folder / "a.parquet").write_bytes(b"first")
        assert not target.exists(), "nothing under the target's name before the end"
    assert [path.name for path in target.iterdir()] == ["a.parquet"]
    assert target.stat().st_mode & 0o777 == 0o755
    with atomic_directory(target) as folder:
        (folder / "b.parquet").write_bytes(b"second")
    assert [path.name for path in target.iterdir()] == ["b.parquet"]
    assert list(target.parent.iterdir()) == [target], "no temporary or old folder left"


def test_an_error_mid_folder_leaves_the_earlier_one_and_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "rows.parquet"
    target.mkdir()
    (target / "a.parquet").write_bytes(b"earlier")
    with pytest.raises(RuntimeError), atomic_directory(target) as folder:
        (folder / "b.parquet").write_bytes(b"half")
        raise RuntimeError("crash")
    assert [path.name for path in target.iterdir()] == ["a.parquet"]
    assert list(tmp_path.iterdir()) == [target]


def test_a_killed_folder_writer_leaves_the_earlier_folder_intact(tmp_path: Path) -> None:
    target = tmp_path / "rows.parquet"
    target.mkdir()
    (target / "a.parquet").write_bytes(b"earlier")
    code = (
        "import os, signal, sys\n"
        "from scratchnet.files import atomic_directory\n"
        "with atomic_directory(sys.argv[1]) as folder:\n"
        "    (folder / 'b.parquet').write_bytes(b'half')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(target)], timeout=60)
    assert result.returncode == -signal.SIGKILL
    assert [path.name for path in target.iterdir()] == ["a.parquet"]
    leftovers = [path.name for path in tmp_path.iterdir() if path != target]
    assert all(name.startswith(".rows.parquet.") and name.endswith(".tmp") for name in leftovers)
