"""Image files as arrays a model takes: photos (Pillow, the optional `images` extra), .npy arrays
and IDX image files (the MNIST format, raw or gzip).

Photos become one uint8 image of the model's HxW in MNIST's form (`mnist_form`, the algorithm
of docs/preprocessing.md, which scratchnet/web/preprocess.mjs implements for the browser and
Node.js): light background inverted, cropped to the ink, fitted into 20x20 (for 28x28) keeping
the aspect ratio, centred by centre of mass. With `preprocess=False` a photo already in MNIST's
form is only made grayscale, resized to HxW and inverted if need be. MNIST digits are white on
black, so a photo whose border is mostly light (dark ink on paper) is inverted: that is
`invert="auto"`; "yes" and "no" force the choice. Arrays (.npy, IDX) are taken as they are once
their pixels pass the data sets' check (scratchnet.datasets.as_pixels: integers 0-255, floats in
[0, 1]).
"""

from __future__ import annotations

import gzip
import math
import os
import warnings
import zlib
from pathlib import Path
from tokenize import TokenError
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from scratchnet.datasets import as_pixels
from scratchnet.errors import ScratchnetError
from scratchnet.idx import IMAGES_MAGIC, read_idx

__all__ = ["INVERT_CHOICES", "Invert", "load_images", "mnist_form", "plain_form"]

Invert = Literal["auto", "yes", "no"]
INVERT_CHOICES: tuple[Invert, ...] = ("auto", "yes", "no")
_KINDS = "a photo (.png, .jpg, …), a .npy array or an IDX image file"
# MNIST's proportions: digits fitted into 20x20 in a 28x28 frame, which sets each model's box.
_BOX, _FRAME = 20, 28
_INK_THRESHOLD = 0.1 * 255
"""Pixels above this (of 255, after levels) count as ink for the bounding box."""


def load_images(
    path: str | os.PathLike[str],
    image_shape: tuple[int, int],
    invert: Invert = "auto",
    preprocess: bool = True,
) -> NDArray[np.uint8] | NDArray[np.float32]:
    """The images in `path` as [N, H, W], (H, W) = `image_shape`: uint8, or float32 in [0, 1].
    A photo is put in MNIST's form unless `preprocess` is False."""
    file = Path(path)
    try:
        is_folder, is_file = file.is_dir(), file.is_file()
    except OSError as error:  # e.g. a folder on the way that may not be searched
        raise ScratchnetError(f"{file}: cannot read it ({error.strerror or error})") from None
    if is_folder:
        raise ScratchnetError(
            f"{file} is a folder, expected a file ({_KINDS}); to classify the files in it, "
            f"name them (e.g. {file / '*'})"
        )
    if not is_file:
        reason = "no such file" if not file.exists() else "not a regular file"
        raise ScratchnetError(f"{file}: {reason} (expected {_KINDS})")
    try:
        if file.suffix.lower() == ".npy":
            images = _npy(file)
        elif _is_idx(file):
            images = read_idx(file, IMAGES_MAGIC).values
        else:
            return _photo(file, image_shape, invert, preprocess)[np.newaxis]
    except OSError as error:
        raise ScratchnetError(f"{file}: cannot read it ({error.strerror or error})") from None
    if images.ndim == 2:
        images = images[np.newaxis]
    if images.ndim != 3 or images.shape[1:] != image_shape or len(images) == 0:
        height, width = image_shape
        raise ScratchnetError(
            f"{file}: images of shape {list(images.shape)}, expected [{height}, {width}] or "
            f"[N, {height}, {width}] with N ≥ 1 (the model's image size)"
        )
    return as_pixels(images, str(file))


def _is_idx(file: Path) -> bool:
    with open(file, "rb") as raw:
        head = raw.read(4)
    if head[:2] == b"\x1f\x8b":
        with gzip.open(file) as unpacked:
            try:
                head = unpacked.read(4)
            except (OSError, EOFError, zlib.error):
                return False
    return head == IMAGES_MAGIC.to_bytes(4, "big")


def _npy(file: Path) -> NDArray[Any]:
    try:
        array = np.load(file, allow_pickle=False)
    except (ValueError, EOFError, MemoryError) as error:  # MemoryError: a header's huge shape
        raise ScratchnetError(f"{file}: not a readable .npy array ({error})") from None
    except (TokenError, SyntaxError, TypeError):
        # numpy reads the header as a Python literal: a garbled one fails in that parser, with
        # messages about Python's syntax that would not help.
        raise ScratchnetError(
            f"{file}: not a readable .npy array (its header is garbled: expected a dict with "
            "'descr', 'fortran_order' and 'shape')"
        ) from None
    if not isinstance(array, np.ndarray):
        array.close()
        raise ScratchnetError(f"{file}: an .npz archive of arrays, expected one .npy array")
    return array


def _photo(
    file: Path, image_shape: tuple[int, int], invert: Invert, preprocess: bool
) -> NDArray[np.uint8]:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise ScratchnetError(
            f"{file}: reading photos needs Pillow, which is not installed: "
            "pip install scratchnet[images]"
        ) from None
    bombs = (Image.DecompressionBombError, Image.DecompressionBombWarning)
    try:
        # Past Pillow's pixel limit, a photo is refused in one line (Pillow itself only warns,
        # in several lines, up to twice that limit, and decodes it all: a decompression bomb).
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(file)
        with opened:
            rgba = np.asarray(_eight_bit(opened, file).convert("RGBA"))
    except (UnidentifiedImageError, OSError, ValueError, *bombs) as error:
        message = f"{file}: not a readable image ({error}), expected {_KINDS}"
        raise ScratchnetError(message) from None
    form = mnist_form if preprocess else plain_form
    return form(rgba, image_shape, invert)


# The pixel range of Pillow's modes wider than 8 bits: "I" is what Pillow reads 16-bit PGM (and,
# in older versions, 16-bit PNG) files as; "F" floats follow the data sets' [0, 1].
_WIDE_RANGE = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535, "I": 65535, "F": 1}


def _eight_bit(image: Any, file: Path) -> Any:
    """`image` with 16- or 32-bit gray pixels scaled from their range to "L" 0-255 (rounded
    as pngjs does), any other image as it is."""
    from PIL import Image  # only called once _photo has imported Pillow

    top = _WIDE_RANGE.get(image.mode)
    if top is None:
        return image
    # Pillow's convert() to "L" or "RGBA" clips these pixels at 255 instead of scaling them,
    # which leaves 16-bit paper and ink all white; "F" holds every one of them exactly.
    floats = image.convert("F")
    low, high = floats.getextrema()
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ScratchnetError(f"{file}: pixels must be finite (found NaN or inf)")
    if low < 0 or high > top:
        raise ScratchnetError(
            f"{file}: float pixels range over [{low:g}, {high:g}], expected [0, 1]"
            if image.mode == "F"
            else f"{file}: 32-bit pixels range over {low:.0f}..{high:.0f}, expected 0..65535"
        )
    # Truncating v * 255 / top + 0.5 rounds half up, as pngjs does for 16-bit PNG files.
    gray = floats.point(lambda value: value * (255 / top) + 0.5).convert("L")
    transparent = image.info.get("transparency")
    if isinstance(transparent, int):
        # A 16-bit PNG's transparent gray level (tRNS) matches raw values, not scaled ones.
        alpha = np.where(np.asarray(floats) == transparent, 0, 255).astype(np.uint8)
        gray = Image.merge("LA", (gray, Image.fromarray(alpha, "L")))
    return gray


def mnist_form(
    rgba: NDArray[np.uint8], image_shape: tuple[int, int], invert: Invert = "auto"
) -> NDArray[np.uint8]:
    """An RGBA image [h, w, 4] (or grayscale [h, w]) as a digit in MNIST's form, [H, W] uint8.

    docs/preprocessing.md is the specification; scratchnet/web/preprocess.mjs follows it step
    for step, and a test checks that the two agree.
    """
    ink = _ink(_gray(rgba), invert)
    height, width = image_shape
    frame = np.zeros(image_shape, dtype=np.float64)
    rows = np.flatnonzero((ink > _INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((ink > _INK_THRESHOLD).any(axis=0))
    if rows.size == 0:
        return frame.astype(np.uint8)  # no ink: a blank image
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    box_height, box_width = _round(height * _BOX / _FRAME), _round(width * _BOX / _FRAME)
    scale = min(box_height / crop.shape[0], box_width / crop.shape[1])
    fit_height = max(1, _round(crop.shape[0] * scale))
    fit_width = max(1, _round(crop.shape[1] * scale))
    fitted = _resample(crop.shape[0], fit_height) @ crop @ _resample(crop.shape[1], fit_width).T
    mass = fitted.sum()
    centre_y = _micro((fitted.sum(axis=1) * np.arange(fit_height)).sum() / mass)
    centre_x = _micro((fitted.sum(axis=0) * np.arange(fit_width)).sum() / mass)
    top = min(max(_round(height / 2 - centre_y), 0), height - fit_height)
    left = min(max(_round(width / 2 - centre_x), 0), width - fit_width)
    frame[top : top + fit_height, left : left + fit_width] = fitted
    return np.clip(np.floor(frame + 0.5), 0, 255).astype(np.uint8)


def plain_form(
    rgba: NDArray[np.uint8], image_shape: tuple[int, int], invert: Invert = "auto"
) -> NDArray[np.uint8]:
    """An RGBA image [h, w, 4] (or grayscale [h, w]) taken as it is, for one already in MNIST's
    form (--no-preprocess): grayscale over white paper, resized to [H, W] with the fitting's
    triangle filter when it is another size, inverted if `invert` says so; [H, W] uint8, as
    preprocess.mjs's plainForm makes it."""
    gray = _gray(rgba)
    height, width = image_shape
    if gray.shape != (height, width):
        gray = _resample(gray.shape[0], height) @ gray @ _resample(gray.shape[1], width).T
    if _inverts(_border(gray), invert):
        gray = 255 - gray
    return np.clip(np.floor(gray + 0.5), 0, 255).astype(np.uint8)


def _gray(image: NDArray[np.uint8]) -> NDArray[np.float64]:
    """Luma (ITU-R 601) of an RGBA image composited over white paper, as float64 0-255."""
    if image.ndim == 2:
        return image.astype(np.float64)
    rgba = image.astype(np.float64)
    alpha = rgba[..., 3] / 255
    red, green, blue = (rgba[..., c] * alpha + 255 * (1 - alpha) for c in range(3))
    gray: NDArray[np.float64] = 0.299 * red + 0.587 * green + 0.114 * blue
    return gray


def _ink(gray: NDArray[np.float64], invert: Invert) -> NDArray[np.float64]:
    """Ink as light on black: inverted if the paper is light, background subtracted, stretched
    so that the darkest ink is 255."""
    border = _border(gray)
    if _inverts(border, invert):
        gray, border = 255 - gray, 255 - border
    background = np.sort(border)[(border.size - 1) // 2]  # the lower median
    ink = np.maximum(gray - background, 0)
    peak = float(ink.max())
    stretched: NDArray[np.float64] = ink * (255 / peak) if peak > 0 else ink
    return stretched


def _border(gray: NDArray[np.float64]) -> NDArray[np.float64]:
    """The outermost ring of pixels: top row, bottom row, left column, right column."""
    return np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])


def _inverts(border: NDArray[np.float64], invert: Invert) -> bool:
    """Whether to invert: `invert` "yes", or "auto" and a light `border` (paper)."""
    return invert == "yes" or (invert == "auto" and bool(border.mean() > 127.5))


def _resample(size: int, new_size: int) -> NDArray[np.float64]:
    """[new_size, size] weights that resize one axis with a triangle filter, widened when
    shrinking so that every input pixel counts (Pillow's antialiased bilinear)."""
    scale = new_size / size
    support = max(1.0, 1 / scale)
    centres = (np.arange(new_size) + 0.5) / scale
    distance = np.abs(np.arange(size) + 0.5 - centres[:, np.newaxis]) / support
    weights = np.maximum(0.0, 1 - distance)
    normalised: NDArray[np.float64] = weights / weights.sum(axis=1, keepdims=True)
    return normalised


def _micro(value: float) -> float:
    """`value` to a millionth, so that a symmetric digit's centre, exactly halfway between two
    pixels, is halfway in every implementation whatever the order of its sums."""
    return float(np.floor(value * 1e6 + 0.5) / 1e6)


def _round(value: float) -> int:
    """Half up, as JavaScript's Math.round (Python's round() goes half to even)."""
    return int(np.floor(value + 0.5))
