"""The trainer's output: weights, biases and metadata in one npz that loads without pickle.

Keys: `weights` float64 [C, H, W], `biases` float64 [C], `metadata` a JSON string (class labels,
input shape and scale, recipe and hyperparameters, data set, accuracies, library versions).
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scratchnet.contract import CLASS_LABELS, IMAGE_SHAPE
from scratchnet.errors import ArtifactError
from scratchnet.files import atomic_write

__all__ = ["Artifact", "load_artifact", "save_artifact"]

_KEYS = ("weights", "biases", "metadata")
# A fixed timestamp for every zip member, so that the same parameters give the same bytes.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Artifact:
    """Trained parameters and what is known about them."""

    weights: NDArray[np.float64]
    biases: NDArray[np.float64]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """C, the number of classes."""
        return int(self.weights.shape[0])

    @property
    def image_shape(self) -> tuple[int, int]:
        """(H, W) of the images the weights expect."""
        return int(self.weights.shape[1]), int(self.weights.shape[2])

    @property
    def class_labels(self) -> list[str]:
        """A name for each class: the metadata's `class_labels`, else "0".."C-1"."""
        labels = self.metadata.get(CLASS_LABELS)  # checked against C when saved and loaded
        if labels is None:
            return [str(index) for index in range(self.num_classes)]
        return [str(label) for label in labels]


def save_artifact(path: str | os.PathLike[str], artifact: Artifact) -> None:
    """Validate `artifact` and write it atomically to `path`, byte-identical for equal inputs."""
    _validate(artifact.weights, artifact.biases, str(path))
    _validate_metadata(artifact.metadata, artifact.weights.shape, str(path))
    arrays = {
        "weights": np.ascontiguousarray(artifact.weights, dtype=np.float64),
        "biases": np.ascontiguousarray(artifact.biases, dtype=np.float64),
        "metadata": np.array(json.dumps(artifact.metadata, sort_keys=True)),
    }
    with atomic_write(path) as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as zf:
        for key, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, array, allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buffer.getvalue())


def load_artifact(path: str | os.PathLike[str]) -> Artifact:
    """Read and validate an artifact; any problem is an ArtifactError naming the file."""
    name = str(path)
    if Path(path).is_dir():
        raise ArtifactError(
            f"artifact {name} is a folder: expected the .npz file that `python -m trainer` writes"
        )
    if not Path(path).is_file():
        raise ArtifactError(f"artifact {name} not found (train one with `python -m trainer`)")
    try:
        open(path, "rb").close()  # is_zipfile says False for a file it may not read
    except OSError as error:
        raise ArtifactError(f"cannot read artifact {name}: {error.strerror}") from None
    if not zipfile.is_zipfile(path):
        raise ArtifactError(
            f"artifact {name} is not an npz file: expected the .npz that `python -m trainer` writes"
        )
    try:
        # Opened here, not by np.load, which leaks the handle when the zip is unreadable.
        with open(path, "rb") as handle:
            npz = np.load(handle, allow_pickle=False)
            missing = [key for key in _KEYS if key not in npz.files]
            if missing:
                raise ArtifactError(
                    f"artifact {name} lacks {', '.join(missing)}: expected keys {', '.join(_KEYS)}"
                )
            weights, biases, metadata_json = (npz[key] for key in _KEYS)
    except ArtifactError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise ArtifactError(f"artifact {name} is not a readable npz file ({error})") from None
    _validate(weights, biases, name)
    if metadata_json.shape != () or metadata_json.dtype.kind != "U":
        raise ArtifactError(f"artifact {name}: metadata must be a JSON string")
    try:
        metadata = json.loads(str(metadata_json))
    except json.JSONDecodeError as error:
        raise ArtifactError(f"artifact {name}: metadata is not valid JSON ({error})") from None
    if not isinstance(metadata, dict):
        raise ArtifactError(f"artifact {name}: metadata must be a JSON object")
    _validate_metadata(metadata, weights.shape, name)
    return Artifact(weights=weights, biases=biases, metadata=metadata)


def _validate(weights: NDArray[Any], biases: NDArray[Any], name: str) -> None:
    if weights.dtype != np.float64 or biases.dtype != np.float64:
        raise ArtifactError(
            f"artifact {name}: weights and biases must be float64, got {weights.dtype} and "
            f"{biases.dtype}"
        )
    if weights.ndim != 3 or 0 in weights.shape:
        raise ArtifactError(
            f"artifact {name}: weights must have shape [C, H, W], got {list(weights.shape)}"
        )
    if biases.shape != weights.shape[:1]:
        raise ArtifactError(
            f"artifact {name}: biases must have shape [{weights.shape[0]}] to match weights "
            f"{list(weights.shape)}, got {list(biases.shape)}"
        )
    if not (np.isfinite(weights).all() and np.isfinite(biases).all()):
        raise ArtifactError(
            f"artifact {name}: weights and biases must be finite (found NaN or inf)"
        )


def _validate_metadata(metadata: dict[str, Any], shape: tuple[int, ...], name: str) -> None:
    """The metadata entries that describe the parameters must agree with them."""
    classes, height, width = shape
    labels = metadata.get(CLASS_LABELS)
    if labels is not None and not (
        isinstance(labels, list)
        and len(labels) == classes
        and all(isinstance(label, str) for label in labels)
    ):
        raise ArtifactError(
            f"artifact {name}: metadata class_labels must be a list of {classes} strings (one per "
            f"class of the weights), got {json.dumps(labels)[:80]}"
        )
    input_shape = metadata.get(IMAGE_SHAPE)
    if input_shape is not None and input_shape != [height, width]:
        raise ArtifactError(
            f"artifact {name}: metadata input_shape {json.dumps(input_shape)[:40]} does not match "
            f"the weights' images [{height}, {width}]"
        )
