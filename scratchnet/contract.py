"""The model contract: what the exporter writes, the server reads and the clients rely on.

Tensor names and their order, the metadata keys of model.onnx, the pixel scaling rule and the
defaults every command shares. The datatype table lives in scratchnet.datatypes.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from scratchnet import datatypes
from scratchnet.datatypes import Datatype

__all__ = [
    "ARTIFACT_SHA256",
    "BATCH",
    "BIASES",
    "CLASSIFIER_OUTPUTS",
    "CLASS_LABELS",
    "DEFAULT_ARTIFACT",
    "DEFAULT_HOST",
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MODEL",
    "DEFAULT_MODEL_NAME",
    "DEFAULT_PORT",
    "IMAGE_SHAPE",
    "INPUT",
    "INPUT_DTYPE",
    "INPUT_DTYPES",
    "INPUT_SCALE",
    "INPUT_SCALE_KEY",
    "LABEL",
    "OUTPUTS",
    "PIXEL_MAX",
    "PROBABILITIES",
    "SCORES",
    "VERSIONS",
    "WEIGHTS",
    "pixel_divisor",
    "scale_uint8",
]

# --- tensor names ---------------------------------------------------------------------------
INPUT = "images"
"""The image input [batch, H, W] of the models this project exports."""
SCORES = "scores"
LABEL = "label"
PROBABILITIES = "probabilities"
OUTPUTS = (SCORES, LABEL, PROBABILITIES)
"""The exported graph's outputs, in graph order."""
CLASSIFIER_OUTPUTS = (LABEL, SCORES, PROBABILITIES)
"""What an image classifier answers (scratchnet.v1 Predict), in this order."""
WEIGHTS = "weights"
BIASES = "biases"
BATCH = "batch"
"""The symbolic name of the batch dimension."""

PRODUCER_NAME = "scratchnet-export"
"""The ModelProto's producer_name that export writes. Its graphs compute every batch row on its
own, so the server may cut a large request into slices (no other model is cut: Triton never
splits a request, and a model may mix its rows, as batch statistics or a softmax over them do)."""

# --- metadata_props keys of model.onnx ------------------------------------------------------
CLASS_LABELS = "class_labels"
"""A JSON list with one display name per class."""
INPUT_SCALE_KEY = "input_scale"
"""What float pixels are multiplied by before the graph sees them: 1/255 (repr of a float)."""
INPUT_DTYPE = "input_dtype"
"""The numpy name of the image input's type: float32 or uint8."""
IMAGE_SHAPE = "input_shape"
"""[H, W] of the images (JSON), which tells a flat [N, H·W] input's image size."""
ARTIFACT_SHA256 = "artifact_sha256"
"""The SHA-256 of the trainer artifact the model was exported from."""
VERSIONS = "versions"
"""The software versions of the training host (versions.python, versions.numpy, ...)."""

# --- pixels ---------------------------------------------------------------------------------
PIXEL_MAX = 255.0
INPUT_SCALE = 1.0 / PIXEL_MAX
"""Float pixels are pixel / 255, in [0, 1], as in the article."""
INPUT_DTYPES: dict[str, Datatype] = {
    "float32": datatypes.by_numpy(np.float32),
    "uint8": datatypes.by_numpy(np.uint8),
}
"""The image input types export writes, by their numpy names."""


def pixel_divisor(input_scale: float = INPUT_SCALE) -> np.float32:
    """The float32 that uint8 pixels are divided by: 255 for the scale 1/255."""
    return np.float32(1.0 / input_scale)


def scale_uint8(pixels: NDArray[np.uint8], input_scale: float = INPUT_SCALE) -> NDArray[np.float32]:
    """uint8 pixels as the float32 a client sends: pixel / 255 computed in float32.

    Divide, never multiply by float32(1/255): 1/255 has no exact float32, and the product misses
    float32(pixel / 255) by one ulp for 126 of the 256 values. The exported uint8 graph divides
    too (a Div node), so both models give identical outputs.
    """
    return pixels.astype(np.float32) / pixel_divisor(input_scale)


# --- defaults -------------------------------------------------------------------------------
DEFAULT_ARTIFACT = Path("artifacts/model.npz")
DEFAULT_MODEL = Path("artifacts/model.onnx")
DEFAULT_MODEL_NAME = "scratchnet"
MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
"""What a model may be called: it names a Triton model folder and a segment of HTTP paths."""
MODEL_NAME_RULE = "letters, digits, '_', '-' and '.', not starting with '-' or '.'"
DEFAULT_MAX_BATCH = 1024
"""Most images one request may carry (the server's --max-batch, Triton's max_batch_size)."""
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 50051
