"""Triton's classification extension: an output asked for with `class_count` k answers, per batch
item, the k largest values as "value:index:label" strings (":label" only where labels exist)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scratchnet import datatypes
from scratchnet.errors import InvalidArgument

__all__ = ["top_classes"]


def top_classes(
    values: NDArray[Any], count: int, labels: Sequence[str], batched: bool, what: str
) -> NDArray[np.object_]:
    """The `count` largest entries of each item of `values` as BYTES strings, largest first:
    shape [N, k] for a batched output, [k] otherwise."""
    if values.dtype.kind not in "iuf":
        raise InvalidArgument(
            f"{what}: class_count needs numbers, the output is {datatypes.by_numpy(values.dtype)}"
        )
    if count < 1:
        raise InvalidArgument(f"{what}: class_count must be >= 1, got {count}")
    items = values.reshape(len(values), -1) if batched else values.reshape(1, -1)
    count = min(count, items.shape[1])
    # Stable, so that equal values keep their index order and answers repeat exactly.
    order = np.argsort(-items.astype(np.float64), axis=1, kind="stable")[:, :count]
    strings = np.empty(order.shape, dtype=object)
    for row, indices in enumerate(order):
        for column, index in enumerate(indices):
            text = f"{_value(items[row, index])}:{index}"
            if index < len(labels):
                text += f":{labels[index]}"
            strings[row, column] = text.encode()
    return strings if batched else strings[0]


def _value(value: Any) -> str:
    # As Triton prints them: six decimals for floats (C++'s std::to_string), integers as they are.
    return f"{value:f}" if isinstance(value, np.floating) else str(int(value))
