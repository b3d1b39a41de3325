"""What a stranger needs to use model.onnx without reading our code: producer, doc string and
metadata_props (class labels, input scale and dtype, the artifact's sha256, training metadata).
"""

from __future__ import annotations

import json
from typing import Any

from scratchnet.artifact import Artifact
from scratchnet.contract import (
    ARTIFACT_SHA256,
    CLASS_LABELS,
    INPUT_DTYPE,
    INPUT_SCALE,
    INPUT_SCALE_KEY,
)

__all__ = ["metadata_props", "model_doc_string"]


def metadata_props(artifact: Artifact, artifact_sha256: str, input_dtype: str) -> dict[str, str]:
    """metadata_props, sorted by key: the artifact's metadata flattened, then the exporter's keys
    (the contract's CLASS_LABELS, INPUT_SCALE_KEY, INPUT_DTYPE, ARTIFACT_SHA256), which win.

    Nested objects become dotted keys ("metrics.test_accuracy"); values that are not strings are
    written as JSON, so "0.9104" and '["0", "1"]' read back with json.loads.
    """
    props = dict(_flatten(artifact.metadata))
    props.update(
        {
            CLASS_LABELS: json.dumps(artifact.class_labels),
            INPUT_SCALE_KEY: repr(INPUT_SCALE),
            INPUT_DTYPE: input_dtype,
            ARTIFACT_SHA256: artifact_sha256,
        }
    )
    return dict(sorted(props.items()))


def model_doc_string(artifact: Artifact, input_dtype: str) -> str:
    """How to feed the model and read its outputs, for the ModelProto's doc_string."""
    height, width = artifact.image_shape
    classes = artifact.num_classes
    if input_dtype == "uint8":
        feed = (
            f"uint8 [batch, {height}, {width}]: raw pixels 0-255, 0 = background "
            "(the graph divides by 255)"
        )
    else:
        feed = (
            f"float32 [batch, {height}, {width}]: pixels divided by 255 (metadata input_scale), "
            "so 0.0 = background and 1.0 = full ink"
        )
    return (
        "A single-layer image classifier (scratchnet, after the article 'Neural Networks From "
        f"Scratch'), {classes} classes. Input 'images': {feed}; row-major, one image per batch "
        f"row. Outputs: 'scores' float32 [batch, {classes}] = sum over pixels of image * "
        "weights[c] + biases[c]; 'label' int64 [batch] = argmax of scores, an index into "
        "metadata class_labels (a JSON array); 'probabilities' float32 "
        f"[batch, {classes}] = softmax of scores."
    )


def _flatten(values: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            items += _flatten(value, f"{name}.")
        elif isinstance(value, str):
            items.append((name, value))
        else:
            items.append((name, json.dumps(value, sort_keys=True)))
    return items
