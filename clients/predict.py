"""`python -m clients.predict`: classify image files with a scratchnet server over gRPC.

Each file is a photo (.png, .jpg, …; put in MNIST's form for the model's HxW: inverted if it is
dark on light, cropped to the ink, fitted and centred as MNIST's digits are), a .npy array or an
IDX image file; prints each image's label and class probabilities.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from clients.cli import add_model_flags, add_server_flags, model_options, security_options
from clients.client import Client, ModelInfo, Prediction
from clients.images import INVERT_CHOICES, load_images
from scratchnet.cli import ArgumentParser, program_name, run_cli
from scratchnet.errors import one_line

__all__ = ["main"]

PROGRAM = program_name("python -m clients.predict")


def main() -> None:
    """The command line; see --help."""
    run_cli(PROGRAM, _main)


def _main() -> int:
    parser = ArgumentParser(
        prog=PROGRAM,
        description="Classify image files with a scratchnet server over gRPC. Exit code 0; 1 if "
        "a call failed (the server unreachable, a refusal, a wrong reply); 2 for the caller's "
        "mistake found before any call (a flag, a file).",
    )
    parser.add_argument(
        "files",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="a photo (.png, .jpg, …), a .npy array [H,W] or [N,H,W], or an IDX image file",
    )
    add_server_flags(parser, "deadline of each call")
    add_model_flags(parser)
    parser.add_argument(
        "--invert",
        choices=INVERT_CHOICES,
        default="auto",
        help="photos only: auto (default) inverts a photo whose border is light, so that the "
        "digit is light on dark like MNIST's; yes or no force it",
    )
    parser.add_argument(
        "--no-preprocess",
        dest="preprocess",
        action="store_false",
        help="photos only: take them as they are (grayscale, resized to the model's HxW), for "
        "images already in MNIST's form; by default a photo is cropped to its ink, fitted into "
        "the model's HxW in MNIST's proportions (20x20 of 28x28) and centred by mass "
        "(docs/preprocessing.md)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args()
    options = {**security_options(parser, args), **model_options(args)}
    with Client(args.target, timeout=args.timeout, **options) as client:
        info = client.model_info()
        # Read every file before the first call, so that a bad one fails fast.
        inputs = [
            (file, load_images(file, info.image_shape, args.invert, args.preprocess))
            for file in args.files
        ]
        # A model that outputs labels only has no probabilities to show.
        wanted = "probabilities" in info.outputs
        results = [(file, client.predict(images, probabilities=wanted)) for file, images in inputs]
    rows = _rows(results)
    if args.json:
        print(json.dumps(_report(rows, info, args.target), indent=2))
    else:
        width = max(len(one_line(row.image)) for row in rows)
        # The label column as wide as the widest class name, so the probabilities line up.
        label_width = max(len(name) for name in info.class_labels)
        for row in rows:
            print(_line(row, info.class_labels, width, label_width))
    return 0


@dataclass(frozen=True)
class _Row:
    image: str
    label: int
    probabilities: NDArray[np.float32] | None


def _rows(results: list[tuple[Path, Prediction]]) -> list[_Row]:
    """One row per image; the images of a multi-image file are named file[i]."""
    rows = []
    for file, prediction in results:
        many = len(prediction.labels) > 1
        for index, label in enumerate(prediction.labels):
            probabilities = prediction.probabilities
            rows.append(
                _Row(
                    f"{file}[{index}]" if many else str(file),
                    int(label),
                    None if probabilities is None else probabilities[index],
                )
            )
    return rows


def _line(row: _Row, class_labels: Sequence[str], width: int, label_width: int = 0) -> str:
    # A file name with a line break or a terminal escape in it stays on its row.
    text = f"{one_line(row.image):<{width}}  {class_labels[row.label]}"
    if row.probabilities is None:
        return text
    text = f"{text:<{width + 2 + label_width}}"
    return f"{text}  ({row.probabilities[row.label]:.3f})   " + " ".join(
        f"{name}:{p:.3f}" for name, p in zip(class_labels, row.probabilities, strict=True)
    )


def _report(rows: list[_Row], info: ModelInfo, target: str) -> dict[str, Any]:
    predictions: list[dict[str, Any]] = []
    for row in rows:
        entry: dict[str, Any] = {
            "image": row.image,
            "label": row.label,
            "class_label": info.class_labels[row.label],
        }
        if row.probabilities is not None:
            entry["probabilities"] = row.probabilities.astype(np.float64).round(6).tolist()
        predictions.append(entry)
    return {
        "target": target,
        "model": {"name": info.name, "version": info.version},
        "class_labels": list(info.class_labels),
        "predictions": predictions,
    }


if __name__ == "__main__":
    main()
