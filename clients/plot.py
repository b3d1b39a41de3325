"""Drawing a confusion matrix to an image file with matplotlib (the optional `plots` extra)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scratchnet.errors import ScratchnetError
from scratchnet.files import atomic_write, check_writable

__all__ = ["check_plot_path", "save_confusion_matrix"]


def check_plot_path(path: str | os.PathLike[str]) -> str:
    """The file format for `path` (from its suffix, png if none); fails early if matplotlib is
    missing, cannot write that format, or `path` cannot be written (a folder, no access)."""
    check_writable(path)
    supported = _figure().canvas.get_supported_filetypes()
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    if fmt not in supported:
        raise ScratchnetError(
            f"plot {path}: cannot draw .{fmt} files, expected one of "
            f"{', '.join('.' + name for name in sorted(supported))}"
        )
    return fmt


def save_confusion_matrix(
    path: str | os.PathLike[str], confusion: NDArray[np.int64], labels: Sequence[str], title: str
) -> None:
    """Draw `confusion` (rows: true class, columns: predicted), each cell with its count."""
    fmt = check_plot_path(path)
    classes = len(labels)
    size = 1.5 + 0.5 * classes
    figure = _figure(figsize=(size + 1.5, size))
    axes = figure.subplots()
    image = axes.imshow(confusion, cmap="Blues")
    figure.colorbar(image, ax=axes, label="images")
    ticks = np.arange(classes)
    axes.set_xticks(ticks, labels)
    axes.set_yticks(ticks, labels)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title)
    threshold = confusion.max() / 2
    for (row, column), count in np.ndenumerate(confusion):
        color = "white" if count > threshold else "black"
        axes.text(column, row, str(count), ha="center", va="center", color=color, fontsize=7)
    figure.tight_layout()
    with atomic_write(path) as handle:
        figure.savefig(handle, format=fmt, dpi=120)


def _figure(**options: Any) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ScratchnetError(
            "drawing a plot needs matplotlib, which is not installed: pip install scratchnet[plots]"
        ) from None
    return Figure(**options)
