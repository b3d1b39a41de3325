"""`python -m clients.predict` against the real server: photos, .npy and IDX files give the numpy
forward pass's labels and probabilities; bad input is one line on stderr."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from scratchnet.artifact import Artifact
from scratchnet.datasets import Dataset
from scratchnet.forward import predict, probabilities, scores
from scratchnet.idx import write_idx
from tests.conftest import RunningServer, assert_one_line_error, run_module

PROGRAM = "python -m clients.predict"


def expected(artifact: Artifact, images: NDArray[Any]) -> tuple[list[int], NDArray[np.float64]]:
    """Labels and probabilities of the numpy forward pass."""
    labels = predict(artifact.weights, artifact.biases, images).tolist()
    return labels, probabilities(scores(artifact.weights, artifact.biases, images))


def predictions(server: RunningServer, *args: str | Path) -> list[dict[str, Any]]:
    """The --json predictions for `args`."""
    result = run_module("clients.predict", "--target", server.target, "--json", *args)
    report = json.loads(result.stdout)
    assert report["model"]["name"] == "scratchnet"
    return list(report["predictions"])


def test_npy_idx_png_and_jpg_files_match_numpy(
    server: RunningServer, mnist: Dataset, artifact: Artifact, tmp_path: Path
) -> None:
    images = mnist.test_images[:8].astype(np.uint8)
    np.save(tmp_path / "batch.npy", images[:3])
    np.save(tmp_path / "one.npy", images[3].astype(np.float32) / 255)
    write_idx(tmp_path / "images-idx3-ubyte.gz", images[4:6], compress=True)
    write_idx(tmp_path / "raw-images", images[6:8], compress=False)
    Image.fromarray(images[0]).save(tmp_path / "digit.png")
    Image.fromarray(images[1]).save(tmp_path / "digit.jpg", quality=90)
    # JPEG is lossy: the reference is what the file decodes to.
    with Image.open(tmp_path / "digit.jpg") as decoded:
        jpeg_pixels = np.asarray(decoded.convert("L"), dtype=np.uint8)
    found = predictions(
        server,
        "--no-preprocess",  # the photos are MNIST digits already
        tmp_path / "batch.npy",
        tmp_path / "one.npy",
        tmp_path / "images-idx3-ubyte.gz",
        tmp_path / "raw-images",
        tmp_path / "digit.png",
        tmp_path / "digit.jpg",
    )
    names = [f"batch.npy[{i}]" for i in range(3)] + ["one.npy"]
    names += [f"images-idx3-ubyte.gz[{i}]" for i in range(2)]
    names += [f"raw-images[{i}]" for i in range(2)] + ["digit.png", "digit.jpg"]
    assert [Path(p["image"]).name for p in found] == names
    sent = np.concatenate([images[[0, 1, 2, 3, 4, 5, 6, 7, 0]], jpeg_pixels[np.newaxis]])
    labels, probs = expected(artifact, sent)
    assert [p["label"] for p in found] == labels
    assert [p["class_label"] for p in found] == [artifact.class_labels[k] for k in labels]
    np.testing.assert_allclose([p["probabilities"] for p in found], probs, atol=1e-5)


def test_without_preprocessing_photos_are_resized_and_dark_on_light_ones_inverted(
    server: RunningServer, mnist: Dataset, artifact: Artifact, tmp_path: Path
) -> None:
    digit = mnist.test_images[0]
    Image.fromarray(255 - digit).save(tmp_path / "paper.png")
    # Twice the model's size, every pixel doubled: resizing brings back (nearly) the original.
    Image.fromarray(np.kron(digit, np.ones((2, 2), dtype=np.uint8))).save(tmp_path / "big.png")
    paper, big = predictions(
        server, "--no-preprocess", tmp_path / "paper.png", tmp_path / "big.png"
    )
    labels, probs = expected(artifact, digit[np.newaxis])
    assert paper["label"] == big["label"] == labels[0]
    np.testing.assert_allclose(paper["probabilities"], probs[0], atol=1e-5)
    (kept,) = predictions(server, "--no-preprocess", "--invert", "no", tmp_path / "paper.png")
    _, kept_probs = expected(artifact, (255 - digit)[np.newaxis])
    np.testing.assert_allclose(kept["probabilities"], kept_probs[0], atol=1e-5)


def test_text_output_has_one_line_per_image(
    server: RunningServer, mnist: Dataset, artifact: Artifact, tmp_path: Path
) -> None:
    np.save(tmp_path / "two.npy", mnist.test_images[:2])
    result = run_module("clients.predict", "--target", server.target, tmp_path / "two.npy")
    lines = result.stdout.splitlines()
    labels, probs = expected(artifact, mnist.test_images[:2])
    assert len(lines) == 2
    for index, line in enumerate(lines):
        name, label, top, *per_class = line.split()
        assert name.endswith(f"two.npy[{index}]")
        assert label == artifact.class_labels[labels[index]]
        assert top == f"({probs[index, labels[index]]:.3f})"
        assert len(per_class) == artifact.num_classes


def test_a_file_name_with_a_line_break_stays_on_its_row(
    server: RunningServer, mnist: Dataset, tmp_path: Path
) -> None:
    np.save(tmp_path / "a\nb.npy", mnist.test_images[:1])
    result = run_module("clients.predict", "--target", server.target, tmp_path / "a\nb.npy")
    (line,) = result.stdout.splitlines()
    assert line.split()[0] == f"{tmp_path}/a\\nb.npy"


def test_bad_input_is_one_line_and_a_nonzero_exit(
    server: RunningServer, mnist: Dataset, tmp_path: Path, closed_port: int
) -> None:
    (tmp_path / "text.png").write_text("not an image")
    np.save(tmp_path / "narrow.npy", mnist.test_images[:2, :, :-1])
    np.save(tmp_path / "unscaled.npy", mnist.test_images[:2].astype(np.float64))
    np.save(tmp_path / "ok.npy", mnist.test_images[:1])
    garbled = bytearray((tmp_path / "ok.npy").read_bytes())
    garbled[20:30] = b"{" * 10  # inside the header's dict: numpy's parser fails on it
    (tmp_path / "garbled.npy").write_bytes(garbled)
    (tmp_path / "folder").mkdir()
    count, height, width = 2, *mnist.image_shape
    cases: list[tuple[list[str | Path], str]] = [
        ([tmp_path / "missing.png"], "missing.png: no such file"),
        ([tmp_path / "text.png"], "text.png: not a readable image"),
        ([tmp_path / "narrow.npy"], f"narrow.npy: images of shape [{count}, {height}, {width - 1}"),
        (
            [tmp_path / "unscaled.npy"],
            "unscaled.npy: float pixels range over [0.0, 255.0], expected [0, 1]",
        ),
        ([tmp_path / "garbled.npy"], "garbled.npy: not a readable .npy array (its header is"),
        ([tmp_path / "folder"], "folder is a folder, expected a file (a photo"),
        (["--timeout", "1e10", tmp_path / "ok.npy"], "expected at most 86400 seconds (a day)"),
        (["--invert", "maybe", tmp_path / "ok.npy"], "invalid choice: 'maybe'"),
        ([], "required: FILE"),
    ]
    for args, message in cases:
        result = run_module("clients.predict", "--target", server.target, *args, check=False)
        assert_one_line_error(result, PROGRAM, message)
    # A mistake exits 2; a call that failed, 1.
    for target, message, code in [
        (f"127.0.0.1:{closed_port}", "UNAVAILABLE", 1),
        ("no-port", "expected HOST:PORT", 2),
    ]:
        result = run_module("clients.predict", "--target", target, tmp_path / "ok.npy", check=False)
        assert_one_line_error(result, PROGRAM, message, code=code)


def test_the_probabilities_line_up_whatever_the_class_names_width() -> None:
    # With 10 or more classes, label "4" and label "11" must not shift the columns after them.
    from clients.predict import _line, _Row

    names = [str(index) for index in range(12)]
    rows = [_Row("a.png", label, np.full(12, 1 / 12, np.float32)) for label in (4, 11)]
    lines = [_line(row, names, width=5, label_width=2) for row in rows]
    assert lines[0].index("(") == lines[1].index("(")
    assert lines[0].startswith("a.png  4   (0.083)")
