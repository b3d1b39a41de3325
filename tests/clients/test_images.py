"""MNIST-style preprocessing (clients.images.mnist_form, docs/preprocessing.md): digits drawn
thick, small and off-centre read as their centred MNIST originals, and the JavaScript module the
playground and the Node.js client use gives the same pixels as the Python one."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter

from clients.images import load_images, mnist_form
from scratchnet.artifact import Artifact
from scratchnet.datasets import Dataset
from scratchnet.errors import ScratchnetError
from scratchnet.forward import scores
from tests.conftest import REPO

SAMPLE = 200
PAPER = 400


def labels_of(artifact: Artifact, images: NDArray[Any]) -> NDArray[np.int64]:
    """The article model's labels (numpy's forward pass) for uint8 images [N,H,W]."""
    return scores(artifact.weights, artifact.biases, images).argmax(axis=1)


def on_paper(digit: NDArray[np.uint8], rng: np.random.Generator) -> NDArray[np.uint8]:
    """An MNIST digit as a user would draw it: dark ink on white 400x400 paper, six times as
    big, strokes thickened, somewhere off-centre."""
    big = Image.fromarray(255 - digit).resize((168, 168), Image.Resampling.BILINEAR)
    thick = big.filter(ImageFilter.MinFilter(7))
    paper = Image.new("L", (PAPER, PAPER), 255)
    paper.paste(thick, (int(rng.integers(0, PAPER - 168)), int(rng.integers(0, PAPER - 168))))
    return np.asarray(paper)


def test_thick_small_off_centre_digits_read_as_their_centred_originals(
    mnist: Dataset, artifact: Artifact
) -> None:
    rng = np.random.default_rng(0)
    digits = mnist.test_images[:SAMPLE]
    drawn = [on_paper(digit, rng) for digit in digits]
    centred = labels_of(artifact, digits)
    fitted = labels_of(artifact, np.stack([mnist_form(page, (28, 28)) for page in drawn]))
    # Without preprocessing: the page shrunk to 28x28 and inverted, as before this module.
    shrunk = np.stack(
        [255 - np.asarray(Image.fromarray(page).resize((28, 28), Image.Resampling.LANCZOS))
         for page in drawn]
    )  # fmt: skip
    naive = labels_of(artifact, shrunk)
    assert np.mean(fitted == centred) >= 0.88
    assert np.mean(naive == centred) <= 0.3


def drawing(strokes: Callable[[ImageDraw.ImageDraw], object]) -> NDArray[np.uint8]:
    """Black strokes on white 400x400 paper."""
    paper = Image.new("L", (PAPER, PAPER), 255)
    strokes(ImageDraw.Draw(paper))
    return np.asarray(paper)


# Thick strokes in a corner of the page, as a user draws them in a paint program.
DRAWN: dict[int, Callable[[ImageDraw.ImageDraw], object]] = {
    0: lambda d: d.ellipse([250, 230, 340, 360], outline=0, width=20),
    1: lambda d: d.line([(60, 40), (70, 140)], fill=0, width=22),
    3: lambda d: (
        d.arc([200, 30, 280, 100], -150, 90, fill=0, width=16),
        d.arc([200, 95, 280, 170], -90, 150, fill=0, width=16),
    ),
    4: lambda d: (
        d.line([(300, 40), (270, 120), (350, 120)], fill=0, width=18),
        d.line([(330, 70), (330, 170)], fill=0, width=18),
    ),
    7: lambda d: d.line([(40, 250), (130, 250), (80, 380)], fill=0, width=20, joint="curve"),
}


@pytest.mark.parametrize("digit", sorted(DRAWN))
def test_digits_drawn_with_pillow_are_classified(digit: int, artifact: Artifact) -> None:
    pixels = mnist_form(drawing(DRAWN[digit]), (28, 28))
    assert labels_of(artifact, pixels[np.newaxis])[0] == digit


def centre_of_mass(image: NDArray[Any]) -> tuple[float, float]:
    mass = image.sum()
    return (
        float((image.sum(axis=1) * np.arange(image.shape[0])).sum() / mass),
        float((image.sum(axis=0) * np.arange(image.shape[1])).sum() / mass),
    )


def test_the_box_and_the_centre_come_from_the_model_size() -> None:
    page = drawing(DRAWN[0])
    for shape in ((28, 28), (14, 21), (56, 40)):
        pixels = mnist_form(page, shape)
        assert pixels.shape == shape and pixels.dtype == np.uint8
        rows = np.flatnonzero(pixels.any(axis=1))
        cols = np.flatnonzero(pixels.any(axis=0))
        # The 0 is taller than wide: its height fills 20/28 of the frame's height (give or take
        # the filter's faint edge), its width keeps the aspect ratio.
        box = round(shape[0] * 20 / 28)
        assert box <= rows[-1] - rows[0] + 1 <= box + 2
        assert cols[-1] - cols[0] + 1 < rows[-1] - rows[0] + 1
        centre_y, centre_x = centre_of_mass(pixels.astype(np.float64))
        assert abs(centre_y - shape[0] / 2) <= 0.5 and abs(centre_x - shape[1] / 2) <= 0.5


def test_paper_ink_transparency_and_blank_pages() -> None:
    page = drawing(DRAWN[1])
    light_on_dark = mnist_form(255 - page, (28, 28))
    assert np.array_equal(mnist_form(page, (28, 28)), light_on_dark)  # paper is inverted
    assert light_on_dark.max() == 255 and light_on_dark[0].max() == 0
    # Transparent pixels count as white paper whatever colour they hide.
    rgba = np.zeros((*page.shape, 4), dtype=np.uint8)
    rgba[..., 3] = 255 - page
    assert np.array_equal(mnist_form(rgba, (28, 28)), light_on_dark)
    assert not mnist_form(np.full((50, 50), 255, np.uint8), (28, 28)).any()
    # Forced not to invert, the light paper is the background and nothing else is left.
    assert not mnist_form(page, (28, 28), invert="no").any()


# --- the same pixels from the JavaScript module -------------------------------------------
NODE_SCRIPT = """
const { readImages } = require(process.argv[1]);
(async () => {
  const [shape, preprocess, ...files] = JSON.parse(process.argv[2]);
  const out = {};
  for (const file of files) {
    const { data } = await readImages(file, { imageShape: async () => shape, preprocess });
    out[file] = Array.from(data);
  }
  process.stdout.write(JSON.stringify(out));
})().catch((error) => { console.error(error.message); process.exit(1); });
"""
NODE_IMAGES = REPO / "clients" / "node" / "lib" / "images.js"


def javascript_pixels(
    files: list[Path], shape: tuple[int, int], preprocess: bool = True
) -> dict[str, NDArray[np.uint8]]:
    """What the Node.js client's image input (scratchnet/web/preprocess.mjs) makes of `files`."""
    node = shutil.which("node")
    modules = REPO / "clients" / "node" / "node_modules" / "pngjs"
    if node is None or not modules.is_dir():
        message = "needs Node.js and `make node-deps` (clients/node/node_modules)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    arguments = json.dumps([shape, preprocess, *map(str, files)])
    result = subprocess.run(
        [node, "-e", NODE_SCRIPT, str(NODE_IMAGES), arguments],
        capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return {
        name: np.asarray(values, dtype=np.uint8).reshape(shape)
        for name, values in json.loads(result.stdout).items()
    }


def test_python_and_javascript_preprocessing_agree(
    mnist: Dataset, artifact: Artifact, tmp_path: Path
) -> None:
    rng = np.random.default_rng(1)
    files = []
    for digit, strokes in DRAWN.items():
        files.append(tmp_path / f"drawn-{digit}.png")
        Image.fromarray(drawing(strokes)).convert("RGB").save(files[-1])
    for index in range(20):
        files.append(tmp_path / f"mnist-{index}.png")
        Image.fromarray(on_paper(mnist.test_images[index], rng)).save(files[-1])
    rgba = np.zeros((PAPER, PAPER, 4), dtype=np.uint8)
    rgba[..., 3] = 255 - drawing(DRAWN[7])  # ink as opacity on a transparent page
    files.append(tmp_path / "transparent.png")
    Image.fromarray(rgba, "RGBA").save(files[-1])
    files.append(wide_files(drawing(DRAWN[3]), tmp_path)["I;16"])
    jpeg = tmp_path / "photo.jpg"
    Image.fromarray(drawing(DRAWN[4])).convert("RGB").save(jpeg, quality=85)
    for shape in ((28, 28), (20, 24)):
        from_js = javascript_pixels([*files, jpeg], shape)
        for file in files:
            ours = load_images(file, shape)[0].astype(np.int16)
            theirs = from_js[str(file)].astype(np.int16)
            # The same arithmetic in float64; summation order may differ in the last bit, so a
            # pixel may round the other way: never by more than 1.
            assert np.abs(ours - theirs).max() <= 1, file.name
            assert np.mean(ours != theirs) < 0.01, file.name
        # JPEG decoders (libjpeg-turbo and jpeg-js) differ slightly: close, not equal.
        ours = load_images(jpeg, shape)[0].astype(np.int16)
        assert np.abs(ours - from_js[str(jpeg)].astype(np.int16)).mean() < 2.0
    both = javascript_pixels([*files, jpeg], (28, 28))
    python = np.stack([load_images(file, (28, 28))[0] for file in [*files, jpeg]])
    javascript = np.stack([both[str(file)] for file in [*files, jpeg]])
    assert np.array_equal(labels_of(artifact, python), labels_of(artifact, javascript))


def test_python_and_javascript_take_photos_as_they_are_alike(
    mnist: Dataset, tmp_path: Path
) -> None:
    # --no-preprocess: grayscale over white paper, resized with the fitting's triangle filter,
    # inverted on a light border; Python had used Pillow's own gray and Lanczos, and Node.js
    # refused a photo that was not the model's size.
    rng = np.random.default_rng(2)
    digit = mnist.test_images[0]
    colour = np.zeros((*digit.shape, 4), dtype=np.uint8)
    colour[..., :3] = rng.integers(0, 256, (*digit.shape, 3), dtype=np.uint8)
    colour[..., 3] = digit  # ink as opacity over coloured pixels
    pictures = {
        "same-size.png": Image.fromarray(255 - digit),
        "coloured.png": Image.fromarray(colour, "RGBA"),
        "big.png": Image.fromarray(np.kron(digit, np.ones((3, 2), dtype=np.uint8))),
        "small.png": Image.fromarray(on_paper(digit, rng)).resize((19, 23)),
    }
    files = []
    for name, picture in pictures.items():
        files.append(tmp_path / name)
        picture.save(files[-1])
    for shape in ((28, 28), (20, 24)):
        from_js = javascript_pixels(files, shape, preprocess=False)
        for file in files:
            ours = load_images(file, shape, preprocess=False)[0]
            theirs = from_js[str(file)]
            if shape == pictures[file.name].size[::-1]:  # not resized: the same float sums
                assert np.array_equal(ours, theirs), file.name
            # Resized: summation order may differ in the last bit, so a pixel may round the
            # other way, never by more than 1.
            difference = np.abs(ours.astype(np.int16) - theirs.astype(np.int16))
            assert difference.max() <= 1, file.name
            assert np.mean(difference > 0) < 0.01, file.name
    same = load_images(tmp_path / "same-size.png", (28, 28), preprocess=False)[0]
    assert np.array_equal(same, digit)  # light paper inverted back, nothing else done


# --- pixels wider than 8 bits ---------------------------------------------------------------
def wide_files(page: NDArray[np.uint8], folder: Path) -> dict[str, Path]:
    """`page` saved as 16- and 32-bit gray images that hold exactly its 8-bit levels."""
    sixteen = page.astype(np.uint16) * 257  # 255 -> 65535
    files = {
        "I;16": folder / "gray16.png",
        "I;16B": folder / "gray16-big-endian.tif",
        "I": folder / "gray16.pgm",
        "F": folder / "float.tif",
    }
    Image.fromarray(sixteen).save(files["I;16"])
    Image.frombytes("I;16B", page.shape[::-1], sixteen.astype(">u2").tobytes()).save(files["I;16B"])
    Image.fromarray(sixteen).save(files["I"])  # Pillow reads a 16-bit PGM back as "I"
    Image.fromarray(page.astype(np.float32) / 255).save(files["F"])
    return files


def test_16_and_32_bit_gray_images_are_scaled_from_their_range_not_clipped(
    artifact: Artifact, tmp_path: Path
) -> None:
    page = drawing(DRAWN[7])
    Image.fromarray(page).save(tmp_path / "gray8.png")
    for mode, file in wide_files(page, tmp_path).items():
        with Image.open(file) as opened:
            assert opened.mode == mode
        for preprocess in (True, False):
            eight = load_images(tmp_path / "gray8.png", (28, 28), preprocess=preprocess)
            wide = load_images(file, (28, 28), preprocess=preprocess)
            assert np.array_equal(wide, eight), (mode, preprocess)
    # QA's page: paper at 40000 and a stroke at 10000 of 65535, which clipping made all white.
    levels = np.where(drawing(DRAWN[1]) == 0, 10000, 40000).astype(np.uint16)
    Image.fromarray(levels).save(tmp_path / "qa.png")
    pixels = load_images(tmp_path / "qa.png", (28, 28))
    assert pixels.max() == 255
    assert labels_of(artifact, pixels)[0] == 1
    # A transparent gray level (tRNS) is a raw 16-bit value: here the ink's, leaving white paper.
    Image.fromarray(levels).save(tmp_path / "clear-ink.png", transparency=10000)
    assert not load_images(tmp_path / "clear-ink.png", (28, 28)).any()


def test_wide_pixels_outside_their_range_are_refused(tmp_path: Path) -> None:
    page = drawing(DRAWN[1]).astype(np.float32)
    Image.fromarray(page).save(tmp_path / "levels.tif")  # floats 0-255, not [0, 1]
    Image.fromarray(page.astype(np.int32) * 1000).save(tmp_path / "wide.tif")
    for name, message in [
        ("levels.tif", "float pixels range over [0, 255], expected [0, 1]"),
        ("wide.tif", "32-bit pixels range over 0..255000, expected 0..65535"),
    ]:
        with pytest.raises(ScratchnetError, match=re.escape(f"{name}: {message}")):
            load_images(tmp_path / name, (28, 28))


def test_a_photo_past_pillows_pixel_limit_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pillow only warns between its limit and twice it, and would decode the whole image.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    Image.new("L", (40, 40), 255).save(tmp_path / "wide.png")  # 1600 pixels
    with pytest.raises(ScratchnetError, match=r"wide.png: not a readable image \(Image size "
                       r"\(1600 pixels\) exceeds limit of 1000 pixels"):  # fmt: skip
        load_images(tmp_path / "wide.png", (28, 28))
