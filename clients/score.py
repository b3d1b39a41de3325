"""`python -m clients.score`: score a labelled image set over gRPC and report how well and how fast.

Prints accuracy, per-class precision and recall, the confusion matrix, images/s and per-batch
latency (or one JSON object with --json); --plot draws the confusion matrix.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from clients.cli import add_server_flags
from clients.client import Client, ModelInfo
from clients.metrics import Classification, classification
from clients.plot import check_plot_path, save_confusion_matrix
from scratchnet.cli import ArgumentParser, integer, run_cli
from scratchnet.datasets import Dataset, Images, load_dataset
from scratchnet.errors import ScratchnetError

__all__ = ["Score", "main", "score"]

PROGRAM = "python -m clients.score"


@dataclass(frozen=True)
class Score:
    """The outcome of scoring one labelled set over gRPC."""

    classification: Classification
    seconds: float
    latencies: list[float]
    batch_size: int

    @property
    def images_per_second(self) -> float:
        """Images classified per second of wall time, first request to last response."""
        return self.classification.total / self.seconds

    def latency_ms(self, percentile: float) -> float:
        """A percentile of the per-batch latencies, in milliseconds."""
        return float(np.percentile(self.latencies, percentile)) * 1000


def score(
    client: Client, images: Images, labels: NDArray[np.int64], *, progress: bool = False
) -> Score:
    """Classify `images` through `client` and compare with `labels`; tqdm bar if `progress`."""
    info = client.model_info()
    if images.shape[1:] != info.image_shape:
        raise ScratchnetError(
            f"the images are {_size(images.shape[1:])}, but model '{info.name}' expects "
            f"{_size(info.image_shape)}"
        )
    if labels.max() >= info.num_classes:
        raise ScratchnetError(
            f"the labels go up to {labels.max()}, but model '{info.name}' has only "
            f"{info.num_classes} classes"
        )
    predicted = np.empty(len(images), dtype=np.int64)
    latencies: list[float] = []
    largest = 0
    # disable=None: tqdm shows the bar only when stderr is a terminal.
    with tqdm(total=len(images), unit="img", disable=None if progress else True) as bar:
        started = time.perf_counter()
        for batch in client.predict_batches(images):
            found = batch.prediction.labels
            predicted[batch.start : batch.start + len(found)] = found
            latencies.append(batch.latency)
            largest = max(largest, len(found))
            bar.update(len(found))
        seconds = time.perf_counter() - started
    return Score(
        classification(labels, predicted, info.num_classes),
        seconds,
        latencies,
        batch_size=largest,
    )


def main() -> None:
    """The command line; see --help."""
    run_cli(PROGRAM, _main)


def _main() -> int:
    parser = ArgumentParser(
        prog=PROGRAM, description="Score a labelled image set with a scratchnet server over gRPC."
    )
    add_server_flags(parser, "deadline of each call, the whole set being one call")
    parser.add_argument(
        "--data", metavar="PATH", help="IDX directory or npz file (default: the bundled MNIST)"
    )
    parser.add_argument("--split", choices=("test", "train"), default="test", help="default: test")
    parser.add_argument(
        "--batch-size",
        type=integer(1),
        metavar="N",
        help="images per request (default: 512 KiB of pixels); capped by the server's limit",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.add_argument(
        "--plot", metavar="FILE.png", help="also draw the confusion matrix (needs matplotlib)"
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar (results are still printed)"
    )
    args = parser.parse_args()
    if args.plot:
        check_plot_path(args.plot)
    dataset = load_dataset(args.data)
    images, labels = _split(dataset, args.split)
    with Client(args.target, timeout=args.timeout, batch_size=args.batch_size) as client:
        info = client.model_info()
        result = score(client, images, labels, progress=not args.quiet)
    if args.plot:
        accuracy = result.classification.accuracy
        title = f"{info.name} on {dataset.name} {args.split}: accuracy {accuracy:.4f}"
        save_confusion_matrix(args.plot, result.classification.confusion, info.class_labels, title)
    if args.json:
        report = _report(result, info, dataset, args.split, args.target)
        print(json.dumps(report, indent=2))
    else:
        print(_text(result, info, dataset, args.split, args.target))
    return 0


def _split(dataset: Dataset, split: str) -> tuple[Images, NDArray[np.int64]]:
    if split == "train":
        return dataset.train_images, dataset.train_labels
    return dataset.test_images, dataset.test_labels


def _report(
    result: Score, info: ModelInfo, dataset: Dataset, split: str, target: str
) -> dict[str, Any]:
    c = result.classification
    return {
        "target": target,
        "model": {"name": info.name, "version": info.version},
        "data": {"name": dataset.name, "split": split, "checksum": dataset.checksum},
        "images": c.total,
        "correct": c.correct,
        "accuracy": c.accuracy,
        "seconds": result.seconds,
        "images_per_second": result.images_per_second,
        "batch_size": result.batch_size,
        "batches": len(result.latencies),
        "latency_ms": {"p50": result.latency_ms(50), "p99": result.latency_ms(99)},
        "classes": [
            {
                "index": index,
                "label": label,
                "precision": precision,
                "recall": recall,
                "support": int(support),
            }
            for index, (label, precision, recall, support) in enumerate(
                zip(info.class_labels, c.precision, c.recall, c.support, strict=True)
            )
        ],
        "confusion_matrix": c.confusion.tolist(),
    }


def _text(result: Score, info: ModelInfo, dataset: Dataset, split: str, target: str) -> str:
    c = result.classification
    lines = [
        f"scored {c.total} {split} images of {dataset.name} with model '{info.name}' "
        f"version '{info.version}' at {target}",
        f"accuracy    {c.accuracy:.4f} ({c.correct} of {c.total} correct)",
        f"throughput  {result.images_per_second:,.0f} images/s ({result.seconds:.3f} s)",
        f"latency     p50 {result.latency_ms(50):.2f} ms, p99 {result.latency_ms(99):.2f} ms "
        f"per batch of up to {result.batch_size} images ({len(result.latencies)} batches)",
        "",
    ]
    width = max(5, *(len(label) for label in info.class_labels))
    lines.append(f"{'class':<{width}}  precision  recall  support")
    for label, precision, recall, support in zip(
        info.class_labels, c.precision, c.recall, c.support, strict=True
    ):
        lines.append(f"{label:<{width}}  {_rate(precision):>9}  {_rate(recall):>6}  {support:>7}")
    lines += ["", "confusion matrix (rows: true class, columns: predicted class)"]
    cell = max(width, len(str(c.confusion.max())))
    lines.append(" " * width + "".join(f" {label:>{cell}}" for label in info.class_labels))
    for label, row in zip(info.class_labels, c.confusion, strict=True):
        lines.append(f"{label:<{width}}" + "".join(f" {count:>{cell}}" for count in row))
    return "\n".join(lines)


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _size(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


if __name__ == "__main__":
    main()
