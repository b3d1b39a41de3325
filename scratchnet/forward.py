"""The network's forward pass in numpy: the one reference every other runtime is checked against.

scores[n, c] = sum over pixels of (x[n] * weights[c]) + biases[c]; probabilities = softmax(scores);
label = argmax(scores). Pixels are scaled to [0, 1] by dividing by 255, as the article does.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from scratchnet.contract import PIXEL_MAX

__all__ = ["predict", "probabilities", "scale_pixels", "scores"]

# Rows scored per matrix product: bounds the float64 copy of uint8 images to a few MB.
_BLOCK = 4096


def scale_pixels(images: NDArray[np.generic]) -> NDArray[np.float64]:
    """Images as float64 in [0, 1]: integer pixels are divided by 255, floats taken as scaled."""
    if np.issubdtype(images.dtype, np.integer):
        scaled: NDArray[np.float64] = np.divide(images, PIXEL_MAX, dtype=np.float64)
        return scaled
    return np.asarray(images, dtype=np.float64)


def scores(
    weights: NDArray[np.floating], biases: NDArray[np.floating], images: NDArray[np.generic]
) -> NDArray[np.float64]:
    """Class scores [N, C] of images [N, H, W] (uint8 0-255, or floats already in [0, 1])."""
    classes = weights.shape[0]
    if images.shape[1:] != weights.shape[1:]:
        raise ValueError(f"images of shape {images.shape[1:]} for weights of {weights.shape[1:]}")
    flat_weights = np.asarray(weights, dtype=np.float64).reshape(classes, -1)
    out = np.empty((len(images), classes), dtype=np.float64)
    for start in range(0, len(images), _BLOCK):
        block = scale_pixels(images[start : start + _BLOCK]).reshape(-1, flat_weights.shape[1])
        out[start : start + len(block)] = block @ flat_weights.T
    out += np.asarray(biases, dtype=np.float64)
    return out


def probabilities(class_scores: NDArray[np.floating]) -> NDArray[np.float64]:
    """Softmax over the last axis, shifted by the row maximum so exp() never overflows."""
    shifted = np.exp(class_scores - class_scores.max(axis=-1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=-1, keepdims=True), dtype=np.float64)


def predict(
    weights: NDArray[np.floating], biases: NDArray[np.floating], images: NDArray[np.generic]
) -> NDArray[np.int64]:
    """Predicted class index [N] of each image: the argmax of its scores."""
    labels: NDArray[np.int64] = scores(weights, biases, images).argmax(axis=1).astype(np.int64)
    return labels
