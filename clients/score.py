"""`python -m clients.score`: score a labelled image set and report how well and how fast.

Through running servers over gRPC (`--engine server`, the default: one server or replicas), or
as an offline batch job on Ray Data that runs model.onnx itself (`--engine ray`, see
clients.ray_engine). Prints accuracy, per-class precision and recall, the confusion matrix,
images/s and per-batch latency (or one JSON object with --json); --plot draws the confusion
matrix; --output writes one row per image to a Parquet folder (clients.results).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from clients.cli import (
    MODEL_FLAGS,
    SECURITY_FLAGS,
    add_model_flags,
    add_server_flags,
    model_options,
    security_options,
)
from clients.client import DEFAULT_TIMEOUT, Client, ModelInfo, Prediction
from clients.inputs import Source, check_fits, open_source
from clients.metrics import Classification, classification
from clients.plot import check_plot_path, save_confusion_matrix
from clients.results import check_output, results_table, write_results
from scratchnet.cli import ArgumentParser, file_path, integer, program_name, run_cli
from scratchnet.datasets import Images

__all__ = ["Score", "main", "score"]

PROGRAM = program_name("python -m clients.score")
ENGINES = ("server", "ray")
_RAY_FLAGS = ("address", "model", "actors")


@dataclass(frozen=True)
class Score:
    """The outcome of scoring a set of images: how fast, and how well when labels are known."""

    images: int
    """Images classified, every repeat included."""
    seconds: float
    latencies: list[float]
    """Seconds per batch; empty when the engine does not time batches (Ray)."""
    batch_size: int
    classification: Classification | None = None
    """Predicted against true labels, over every repeat; None without labels."""
    prediction: Prediction | None = None
    """The first pass's prediction of each image."""

    @property
    def images_per_second(self) -> float:
        """Images classified per second of wall time, first request to last response."""
        return self.images / self.seconds

    def latency_ms(self, percentile: float) -> float | None:
        """A percentile of the per-batch latencies, in milliseconds (None if not timed)."""
        if not self.latencies:
            return None
        return float(np.percentile(self.latencies, percentile)) * 1000


def score(
    client: Client,
    images: Images,
    labels: NDArray[np.int64] | None = None,
    *,
    progress: bool = False,
    repeat: int = 1,
    outputs: tuple[str, ...] = (),
) -> Score:
    """Classify `images` through `client` `repeat` times, comparing with `labels` if given and
    asking for `outputs` (scores, probabilities) too; tqdm bar if `progress`."""
    info = client.model_info()
    check_fits(images, labels, info)
    predicted = np.empty(len(images), dtype=np.int64)
    confusion = np.zeros((info.num_classes, info.num_classes), dtype=np.int64)
    latencies: list[float] = []
    first: list[Prediction] = []
    largest = 0
    wanted = {name: True for name in outputs}
    # disable=None: tqdm shows the bar only when stderr is a terminal.
    with tqdm(total=len(images) * repeat, unit="img", disable=None if progress else True) as bar:
        started = time.perf_counter()
        for round_ in range(repeat):
            for batch in client.predict_batches(images, **wanted):
                found = batch.prediction.labels
                predicted[batch.start : batch.start + len(found)] = found
                if round_ == 0:
                    first.append(batch.prediction)
                latencies.append(batch.latency)
                largest = max(largest, len(found))
                bar.update(len(found))
            if labels is not None:
                confusion += classification(labels, predicted, info.num_classes).confusion
        seconds = time.perf_counter() - started
    return Score(
        images=len(images) * repeat,
        seconds=seconds,
        latencies=latencies,
        batch_size=largest,
        classification=Classification(confusion) if labels is not None else None,
        prediction=_joined(first),
    )


def main() -> None:
    """The command line; see --help."""
    run_cli(PROGRAM, _main)


def _main() -> int:
    parser = _parser()
    args = parser.parse_args()
    _check_flags(parser, args)
    # The Client's keyword arguments: how to reach the servers and which model to ask for.
    options = (
        {**security_options(parser, args), **model_options(args)} if args.engine == "server" else {}
    )
    if args.plot is not None:
        check_plot_path(args.plot)
    if args.output is not None:
        check_output(args.output)
    if args.engine == "ray":
        from clients import ray_engine  # Ray, pyarrow and onnxruntime load only for this engine

        ray_engine.import_ray()  # before reading any data: a missing Ray fails fast
    source = open_source(args.data, args.split, args.preprocess)
    if args.engine == "ray":
        result, info, where = _score_on_ray(args, source)
    else:
        result, info, where = _score_on_servers(args, source, options)
    c = result.classification
    if args.plot is not None and c is not None:
        title = f"{info.name} on {source.name} {source.split}: accuracy {c.accuracy:.4f}"
        save_confusion_matrix(args.plot, c.confusion, info.class_labels, title)
    if args.json:
        print(json.dumps(_report(result, info, source, where, args), indent=2))
    else:
        print(_text(result, info, source, where, args))
    return 0


def _parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=PROGRAM,
        description="Score a labelled image set with scratchnet servers over gRPC, or as a batch "
        "job on Ray that runs model.onnx itself. Exit code 0; 1 if a call or the Ray job failed; "
        "2 for the caller's mistake found before any call (a flag, a file).",
    )
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="server",
        help="server: call running servers (--target); ray: a Ray Data job with an actor pool "
        "running --model in onnxruntime (needs scratchnet[ray]) (default: server)",
    )
    add_server_flags(
        parser,
        "deadline of each call, a whole set being one call to one server; refused with "
        "--engine ray",
        required=False,
    )
    # Unset unless given, so that --engine ray can refuse it (a server's call has DEFAULT_TIMEOUT).
    parser.set_defaults(timeout=None)
    add_model_flags(parser)
    parser.add_argument(
        "--repeat",
        type=integer(1),
        default=1,
        metavar="N",
        help="--engine server: score the data N times, reporting totals (default 1)",
    )
    parser.add_argument(
        "--model", metavar="MODEL.onnx", help="--engine ray: the model each actor opens"
    )
    parser.add_argument(
        "--address",
        metavar="ADDR",
        help="--engine ray: the Ray cluster (e.g. auto, HOST:6379, ray://HOST:10001); "
        "default: a local Ray started for the job",
    )
    parser.add_argument(
        "--actors",
        type=integer(1),
        metavar="N",
        help="--engine ray: actors scoring in parallel (default: one per CPU of the cluster)",
    )
    parser.add_argument(
        "--data",
        metavar="PATH",
        help="IDX folder or npz file (a labelled set; default: the bundled MNIST), an image file "
        "(.npy, IDX, a photo) or a folder of image files",
    )
    parser.add_argument(
        "--split", choices=("test", "train"), help="the half of a labelled set (default: test)"
    )
    parser.add_argument(
        "--no-preprocess",
        dest="preprocess",
        action="store_false",
        help="photos only: take them as they are (grayscale, resized), for images already in "
        "MNIST's form; by default a photo is put in it as clients.predict does "
        "(docs/preprocessing.md)",
    )
    parser.add_argument(
        "--batch-size",
        type=integer(1),
        metavar="N",
        help="images per request, capped by the server's limit (default: 512 KiB of pixels); "
        "--engine ray: per onnxruntime run (default: 1024)",
    )
    parser.add_argument(
        "--output",
        type=file_path,
        metavar="OUT.parquet",
        help="also write one row per image (id, label, scores, probabilities) to this Parquet "
        "folder (needs pyarrow: scratchnet[parquet])",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.add_argument(
        "--plot",
        type=file_path,
        metavar="FILE.png",
        help="also draw the confusion matrix (needs matplotlib)",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar (results are still printed)"
    )
    return parser


def _check_flags(parser: ArgumentParser, args: argparse.Namespace) -> None:
    """The flags of one engine, refused with the other."""
    if args.engine == "ray":
        if args.target is not None:
            parser.error("--target is for --engine server; --engine ray runs --model itself")
        if args.repeat != 1:
            parser.error("--repeat is for --engine server")
        if args.timeout is not None:
            # Ray offers no deadline for a whole job, and interrupting one from a signal handler
            # broke Ray's own calls (a SystemError, a crash while it started): none is promised.
            parser.error(
                "--timeout is for --engine server (each call's deadline); a Ray job runs "
                "without one: stop it with Ctrl-C"
            )
        if args.model is None:
            parser.error("--engine ray needs --model MODEL.onnx")
        for flag in MODEL_FLAGS:
            if getattr(args, flag) is not None:
                parser.error(
                    f"--{flag.replace('_', '-')} chooses a server's model, for --engine server; "
                    "--engine ray runs --model MODEL.onnx itself"
                )
        for flag in SECURITY_FLAGS:
            if getattr(args, flag) is not None:
                parser.error(f"--{flag.replace('_', '-')} is for --engine server")
        return
    if args.target is None:
        parser.error("the following arguments are required: --target (or use --engine ray)")
    for flag in _RAY_FLAGS:
        if getattr(args, flag) is not None:
            parser.error(f"--{flag} is for --engine ray")


def _score_on_servers(
    args: argparse.Namespace, source: Source, options: dict[str, Any]
) -> tuple[Score, ModelInfo, dict[str, Any]]:
    timeout = DEFAULT_TIMEOUT if args.timeout is None else args.timeout
    client = Client(args.target, timeout=timeout, batch_size=args.batch_size, **options)
    with client:
        info = client.model_info()
        images = source.load(info.image_shape)
        # Scores and probabilities travel only when they are written out.
        outputs = tuple(
            n for n in ("scores", "probabilities") if args.output is not None and n in info.outputs
        )
        result = score(
            client,
            images,
            source.labels,
            progress=not args.quiet,
            repeat=args.repeat,
            outputs=outputs,
        )
    if args.output is not None:
        assert result.prediction is not None
        ids = np.arange(len(images), dtype=np.int64)
        files = [str(file) for file in source.files] if source.kind == "folder" else None
        write_results(args.output, results_table(ids, result.prediction, files))
    return result, info, {"engine": "server", "target": args.target, "repeat": args.repeat}


def _score_on_ray(
    args: argparse.Namespace, source: Source
) -> tuple[Score, ModelInfo, dict[str, Any]]:
    from clients import ray_engine

    run = ray_engine.score_on_ray(
        source,
        args.model,
        output=args.output,
        actors=args.actors,
        address=args.address,
        batch_size=args.batch_size or ray_engine.DEFAULT_BATCH,
        progress=not args.quiet,
    )
    info = run.info
    labels = source.labels
    result = Score(
        images=len(run.labels),
        seconds=run.seconds,
        latencies=[],
        batch_size=run.batch_size,
        classification=(
            classification(labels, run.labels, info.num_classes) if labels is not None else None
        ),
        prediction=Prediction(run.labels),
    )
    where = {
        "engine": "ray",
        "address": args.address or "local",
        "actors": run.actors,
        "blocks": run.blocks,
        "files": run.files,
        "start_seconds": run.start_seconds,
        "stop_seconds": run.stop_seconds,
    }
    return result, info, where


def _report(
    result: Score, info: ModelInfo, source: Source, where: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    c = result.classification
    report: dict[str, Any] = {
        "engine": where["engine"],
        "target": where.get("target"),
        "model": {"name": info.name, "version": info.version},
        "data": {"name": source.name, "split": source.split, "checksum": source.checksum},
        "images": result.images,
        "repeat": where.get("repeat", 1),
        "correct": c.correct if c else None,
        "accuracy": c.accuracy if c else None,
        "seconds": result.seconds,
        "images_per_second": result.images_per_second,
        "batch_size": result.batch_size,
        "batches": len(result.latencies),
        "latency_ms": (
            {"p50": result.latency_ms(50), "p99": result.latency_ms(99)}
            if result.latencies
            else None
        ),
        "output": args.output,
    }
    if where["engine"] == "ray":
        report["ray"] = {key: value for key, value in where.items() if key != "engine"}
    if c is None:
        return {**report, "classes": None, "confusion_matrix": None}
    return {
        **report,
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


def _text(
    result: Score, info: ModelInfo, source: Source, where: dict[str, Any], args: argparse.Namespace
) -> str:
    c = result.classification
    what = f"{source.split} images of {source.name}" if source.split else f"images of {source.name}"
    repeat = where.get("repeat", 1)
    passes = f" ({repeat} passes of {result.images // repeat})" if repeat > 1 else ""
    if where["engine"] == "ray":
        on = f"on Ray ({where['address']}, {where['actors']} actors)"
        fixed = f"; Ray started in {where['start_seconds']:.1f} s, stopped in "
        fixed += f"{where['stop_seconds']:.1f} s"
        latency = (
            f"latency     n/a on Ray: batches of up to {result.batch_size} images in "
            f"{where['blocks']} blocks"
        )
    else:
        on, fixed = f"at {where['target']}", ""
        latency = (
            f"latency     p50 {result.latency_ms(50):.2f} ms, p99 {result.latency_ms(99):.2f} ms "
            f"per batch of up to {result.batch_size} images ({len(result.latencies)} batches)"
        )
    lines = [
        f"scored {result.images} {what}{passes} with model '{info.name}' version "
        f"'{info.version}' {on}",
        f"accuracy    {c.accuracy:.4f} ({c.correct} of {c.total} correct)"
        if c
        else "accuracy    n/a (no true labels)",
        f"throughput  {result.images_per_second:,.0f} images/s ({result.seconds:.3f} s{fixed})",
        latency,
    ]
    if args.output is not None:
        lines.append(f"output      {args.output} (Parquet, one row per image)")
    if c is None:
        return "\n".join(lines)
    lines.append("")
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


def _joined(parts: list[Prediction]) -> Prediction:
    def matrix(name: str) -> NDArray[np.float32] | None:
        present = [getattr(part, name) for part in parts if getattr(part, name) is not None]
        return np.concatenate(present) if present else None

    return Prediction(
        labels=np.concatenate([part.labels for part in parts]),
        scores=matrix("scores"),
        probabilities=matrix("probabilities"),
    )


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    main()
