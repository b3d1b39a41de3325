"""Image files as arrays a model takes: photos (Pillow, the optional `images` extra), .npy arrays
and IDX image files (the MNIST format, raw or gzip).

Photos become one grayscale uint8 image resized to the model's HxW. MNIST digits are white on
black, so a photo whose border is mostly light (dark ink on paper) is inverted: that is
`invert="auto"`; "yes" and "no" force the choice. Arrays (.npy, IDX) are taken as they are once
their pixels pass the data sets' check (scratchnet.datasets.as_pixels: integers 0-255, floats in
[0, 1]).
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from scratchnet.datasets import as_pixels
from scratchnet.errors import ScratchnetError
from scratchnet.idx import IMAGES_MAGIC, read_idx

__all__ = ["INVERT_CHOICES", "Invert", "load_images"]

Invert = Literal["auto", "yes", "no"]
INVERT_CHOICES: tuple[Invert, ...] = ("auto", "yes", "no")
_KINDS = "a photo (.png, .jpg, …), a .npy array or an IDX image file"


def load_images(
    path: str | os.PathLike[str], image_shape: tuple[int, int], invert: Invert = "auto"
) -> NDArray[np.uint8] | NDArray[np.float32]:
    """The images in `path` as [N, H, W], (H, W) = `image_shape`: uint8, or float32 in [0, 1]."""
    file = Path(path)
    if not file.is_file():
        raise ScratchnetError(f"{file}: no such file (expected {_KINDS})")
    try:
        if file.suffix.lower() == ".npy":
            images = _npy(file)
        elif _is_idx(file):
            images = read_idx(file, IMAGES_MAGIC).values
        else:
            return _photo(file, image_shape, invert)[np.newaxis]
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
    except (ValueError, EOFError) as error:
        raise ScratchnetError(f"{file}: not a readable .npy array ({error})") from None
    if not isinstance(array, np.ndarray):
        array.close()
        raise ScratchnetError(f"{file}: an .npz archive of arrays, expected one .npy array")
    return array


def _photo(file: Path, image_shape: tuple[int, int], invert: Invert) -> NDArray[np.uint8]:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise ScratchnetError(
            f"{file}: reading photos needs Pillow, which is not installed: "
            "pip install scratchnet[images]"
        ) from None
    height, width = image_shape
    try:
        with Image.open(file) as opened:
            image: Any = opened
            if "A" in image.getbands():
                # Transparent pixels count as white paper, whatever colour they hide.
                paper = Image.new("RGBA", image.size, "white")
                image = Image.alpha_composite(paper, image.convert("RGBA"))
            gray = image.convert("L").resize((width, height), Image.Resampling.LANCZOS)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        message = f"{file}: not a readable image ({error}), expected {_KINDS}"
        raise ScratchnetError(message) from None
    pixels = np.asarray(gray, dtype=np.uint8)
    if invert == "yes" or (invert == "auto" and _light_border(pixels)):
        pixels = 255 - pixels
    return pixels


def _light_border(pixels: NDArray[np.uint8]) -> bool:
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return bool(border.mean() > 127.5)
