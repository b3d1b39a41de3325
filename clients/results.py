"""Per-image results as a Parquet data set: one row per image, `id` (its position in the input),
`label` (the predicted class) and, when the model gives them, `scores` and `probabilities` (C
float32 each); a folder of image files adds `file`.

The output is a folder of Parquet files (a few: pandas.read_parquet, pyarrow.parquet.read_table,
DuckDB and Spark read it as one table), written atomically (scratchnet.files.atomic_directory).
pyarrow is an optional dependency (`scratchnet[parquet]`, also part of `scratchnet[ray]`), so it
is imported only when results are written.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from scratchnet.errors import ScratchnetError
from scratchnet.files import atomic_directory, check_writable

if TYPE_CHECKING:
    import pyarrow as pa

    from clients.client import Prediction

__all__ = [
    "FILE_NAME",
    "check_output",
    "import_pyarrow",
    "read_labels",
    "results_table",
    "write_results",
]

FILE_NAME = "part-00000.parquet"
"""The one file a run through servers writes into the output folder."""


def import_pyarrow() -> Any:
    """The pyarrow module, or a ScratchnetError saying how to install it."""
    try:
        import pyarrow
        import pyarrow.parquet  # loads the submodule: pyarrow.parquet.write_table
    except ImportError:
        raise ScratchnetError(
            "writing Parquet needs pyarrow, which is not installed: "
            "pip install 'scratchnet[parquet]'"
        ) from None
    return pyarrow


def check_output(path: str | os.PathLike[str]) -> None:
    """Fail now, before any scoring, if results cannot be written to folder `path`: pyarrow
    missing, no write access, or something there that is not an earlier output."""
    import_pyarrow()
    target = Path(path)
    if target.suffix not in ("", ".parquet"):  # a CSV or JSON name would hold Parquet files
        raise ScratchnetError(
            f"cannot write {target}: the output is a folder of Parquet files, expected a name "
            "without a suffix or ending in .parquet"
        )
    if target.is_dir():
        others = [p.name for p in target.iterdir() if not (p.is_file() and p.suffix == ".parquet")]
        if others:
            raise ScratchnetError(
                f"cannot write {target}: it is a folder holding other things than .parquet files "
                f"({others[0]}); expected a new path or an earlier output of this command"
            )
        check_writable(target / FILE_NAME)
    elif target.exists():
        raise ScratchnetError(
            f"cannot write {target}: it is a file; the output is a folder of Parquet files, "
            "expected a new path"
        )
    else:
        check_writable(target)


def results_table(
    ids: NDArray[np.int64], prediction: Prediction, files: Sequence[str] | None = None
) -> pa.Table:
    """The rows of images `ids` with their prediction (and file names, for a folder)."""
    pa = import_pyarrow()
    columns: dict[str, Any] = {"id": pa.array(ids, pa.int64())}
    if files is not None:
        columns["file"] = pa.array(files, pa.string())
    columns["label"] = pa.array(prediction.labels, pa.int64())
    for name in ("scores", "probabilities"):
        matrix = getattr(prediction, name)
        if matrix is not None:
            columns[name] = _rows(pa, matrix)
    return pa.table(columns)


def write_results(path: str | os.PathLike[str], table: pa.Table) -> None:
    """Write `table` as the one file of the Parquet folder `path`, atomically."""
    pa = import_pyarrow()
    with atomic_directory(path) as folder:
        pa.parquet.write_table(table, folder / FILE_NAME)


def read_labels(path: str | os.PathLike[str]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The `id` and `label` columns of the Parquet folder `path`, as written."""
    pa = import_pyarrow()
    table = pa.parquet.read_table(path, columns=["id", "label"])
    ids = table["id"].to_numpy().astype(np.int64, copy=False)
    labels = table["label"].to_numpy().astype(np.int64, copy=False)
    return ids, labels


def _rows(pa: Any, matrix: NDArray[np.float32]) -> Any:
    """A [N, C] float32 matrix as N fixed-size lists of C floats, without copying per row."""
    flat = pa.array(np.ascontiguousarray(matrix, dtype=np.float32).reshape(-1), pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, matrix.shape[1])
