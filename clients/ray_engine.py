"""Offline batch scoring on Ray Data: `python -m clients.score --engine ray`.

The driver opens model.onnx once (to check it and learn its H x W) and reads labelled sets and
image files itself; a folder's image files are read inside the pipeline, in parallel (Ray fuses
the reading into the scoring actors' operator). Every image carries its `id`. An actor pool
(`map_batches` with `ray.data.ActorPoolStrategy`) scores batches, each actor having opened the
model in onnxruntime once; results go to a Parquet folder (clients.results) or, without one,
back to the driver. Ray Data restarts an actor that dies and
runs its unfinished blocks again; order is preserved, and the driver checks at the end that the
ids are exactly 0..N-1, once each.

Ray is optional (`pip install 'scratchnet[ray]'`): this module imports ray, pyarrow and
onnxruntime only inside its functions.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from numpy.typing import NDArray

from clients.client import ModelInfo
from clients.inputs import Source, check_fits, load_folder_images
from clients.results import import_pyarrow, read_labels, results_table
from scratchnet.errors import JobFailed, ModelError, ScratchnetError
from scratchnet.files import atomic_directory, require_model_file

__all__ = [
    "BLOCKS_PER_ACTOR",
    "CONNECT_SECONDS",
    "DEFAULT_BATCH",
    "MAX_BLOCK_BYTES",
    "RAY_ENVIRONMENT",
    "ROWS_PER_FILE",
    "RayRun",
    "check_address",
    "import_ray",
    "score_on_ray",
]

DEFAULT_BATCH = 1024
"""Images per onnxruntime run: larger batches were no faster (bench/export_speed.py)."""
BLOCKS_PER_ACTOR = 4
"""Blocks of input per actor: enough to balance the actors and to make a block, the unit Ray runs
again when an actor dies, a small part of the job."""
MAX_BLOCK_BYTES = 16 * 1024 * 1024
"""Most pixel bytes in one block (Ray's own target is 128 MiB)."""
ROWS_PER_FILE = 1_000_000
"""Rows per Parquet file (about 90 MB with 10 classes): few files read back fast."""
RAY_ENVIRONMENT = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_enable_metrics_collection": "0",
}
"""Set (unless already set) before Ray is imported: no usage reports or metrics agent."""
CONNECT_SECONDS = 3.0
"""How long a cluster's address gets to accept a TCP connection before the job is given up:
ray.init itself waits from 40 s to several minutes for an address where nothing listens."""
_INSTALL = "pip install 'scratchnet[ray]'"
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
_SCRATCHNET_ERROR = re.compile(r"^scratchnet\.errors\.\w+: (.+)$", re.MULTILINE)


@dataclass(frozen=True)
class RayRun:
    """What one Ray job did."""

    info: ModelInfo
    labels: NDArray[np.int64]
    """The predicted label of each image, by id."""
    seconds: float
    """The job: from building the pipeline to the last result back (or written)."""
    start_seconds: float
    """Starting Ray (ray.init); 0 when a session was already running in this process."""
    stop_seconds: float
    """Stopping Ray (ray.shutdown); 0 when the session was left to its owner."""
    actors: int
    batch_size: int
    blocks: int
    files: int
    """Parquet files written; 0 without an output."""


def import_ray() -> Any:
    """The ray module (with Ray Data), or a ScratchnetError saying how to install it."""
    for name, value in RAY_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    try:
        import ray
        import ray.data  # Ray Data is an extra of ray: ray[data]
    except ImportError:
        raise ScratchnetError(
            f"--engine ray needs Ray, which is not installed: {_INSTALL}"
        ) from None
    return ray


def score_on_ray(
    source: Source,
    model_path: str | os.PathLike[str],
    *,
    output: str | os.PathLike[str] | None = None,
    actors: int | None = None,
    address: str | None = None,
    batch_size: int = DEFAULT_BATCH,
    progress: bool = False,
    ray_remote_args: Mapping[str, Any] | None = None,
) -> RayRun:
    """Score `source` with model.onnx on Ray: `actors` actors (default: one per CPU of the
    cluster), at `address` (default: a local Ray started here, unless this process already runs
    one); results to the Parquet folder `output` if given. `ray_remote_args` go to the actors
    (e.g. max_restarts)."""
    ray = import_ray()
    import_pyarrow()
    from clients.onnx_model import OnnxModel  # onnxruntime: only now

    model_bytes = _read_model(model_path)
    model = OnnxModel(model_bytes, str(model_path))
    images = None if source.kind == "folder" else source.load(model.image_shape)
    if images is not None:
        check_fits(images, source.labels, model.info)
    count = len(source.files) if images is None else len(images)
    with _session(ray, address) as session:
        available = int(ray.cluster_resources().get("CPU", 1))
        pool = actors or max(1, available)
        image_bytes = math.prod(model.image_shape) * (1 if images is None else images.itemsize)
        rows = max(
            1, min(math.ceil(count / (pool * BLOCKS_PER_ACTOR)), MAX_BLOCK_BYTES // image_bytes)
        )
        blocks = math.ceil(count / rows)
        pool = min(pool, blocks)  # an actor without a block to score would only cost its start
        _configure(ray, progress)
        started = time.perf_counter()
        dataset = _dataset(ray, source, images, rows, model.image_shape)
        scored = dataset.map_batches(
            _Scorer,
            batch_format="pyarrow",
            batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=pool),
            fn_constructor_args=(model_bytes, str(model_path)),
            num_cpus=1,
            **dict(ray_remote_args or {}),
        )
        files = math.ceil(count / ROWS_PER_FILE) if output is not None else 0
        with _job_errors():
            if output is None:
                labels = _checked(*_collect(scored), count)
            else:
                with atomic_directory(output) as folder:
                    scored.repartition(files).write_parquet(str(folder))
                    # Checked before the rename: a wrong output is never published.
                    labels = _checked(*read_labels(folder), count)
        seconds = time.perf_counter() - started
    return RayRun(
        info=model.info,
        labels=labels,
        seconds=seconds,
        start_seconds=session.start_seconds,
        stop_seconds=session.stop_seconds,
        actors=pool,
        batch_size=batch_size,
        blocks=blocks,
        files=files,
    )


class _Scorer:
    """A Ray Data actor: model.onnx opened once, then batches of (id, pixels[, file]) scored."""

    def __init__(self, model: bytes, where: str) -> None:
        from clients.onnx_model import OnnxModel

        self._model = OnnxModel(model, where)

    def __call__(self, batch: Any) -> Any:
        """The result rows (clients.results) of one pyarrow batch."""
        height, width = self._model.image_shape
        pixels = batch["pixels"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
        prediction = self._model.predict(pixels.reshape(len(batch), height, width))
        files = batch["file"].to_pylist() if "file" in batch.column_names else None
        return results_table(batch["id"].to_numpy(), prediction, files)


def _read_files(batch: Any, image_shape: tuple[int, int], preprocess: bool = True) -> Any:
    """A Ray Data task: the images of a batch of (id, file) rows, one image per file."""
    pa = import_pyarrow()
    files = batch["file"].to_pylist()
    images = load_folder_images(tuple(map(Path, files)), image_shape, preprocess)
    return batch.append_column("pixels", _pixels(pa, images))


def _dataset(
    ray: Any,
    source: Source,
    images: NDArray[Any] | None,
    rows: int,
    image_shape: tuple[int, int],
) -> Any:
    """The input as a Ray dataset of blocks of `rows` rows: id and pixels (and file)."""
    pa = import_pyarrow()
    if images is None:
        names = [str(file) for file in source.files]
        tables = [
            pa.table({"id": np.arange(start, start + len(part)), "file": part})
            for start in range(0, len(names), rows)
            for part in [names[start : start + rows]]
        ]
        # Decoding photos is the slow part: Ray does it in parallel, a block at a time.
        return ray.data.from_arrow(tables).map_batches(
            _read_files,
            batch_format="pyarrow",
            batch_size=None,
            fn_kwargs={"image_shape": image_shape, "preprocess": source.preprocess},
        )
    tables = [
        pa.table(
            {
                "id": np.arange(start, start + len(part)),
                "pixels": _pixels(pa, part),
            }
        )
        for start in range(0, len(images), rows)
        for part in [images[start : start + rows]]
    ]
    return ray.data.from_arrow(tables)


def _pixels(pa: Any, images: NDArray[Any]) -> Any:
    """Images [N, H, W] as N fixed-size lists of H*W pixels."""
    flat = pa.array(np.ascontiguousarray(images).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, math.prod(images.shape[1:]))


def _collect(scored: Any) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The id and label columns of every result, brought back to the driver."""
    ids, labels = [], []
    for batch in scored.select_columns(["id", "label"]).iter_batches(batch_format="numpy"):
        ids.append(batch["id"])
        labels.append(batch["label"])
    return np.concatenate(ids).astype(np.int64), np.concatenate(labels).astype(np.int64)


def _checked(ids: NDArray[np.int64], labels: NDArray[np.int64], count: int) -> NDArray[np.int64]:
    """`labels`, once `ids` are exactly 0..count-1: every image scored once, in order."""
    if not np.array_equal(ids, np.arange(count)):
        missing = count - len(np.unique(ids))
        raise JobFailed(
            f"the Ray job returned {len(ids)} rows for {count} images ({missing} missing): "
            "expected every image exactly once, in id order"
        )
    return labels


def _read_model(path: str | os.PathLike[str]) -> bytes:
    require_model_file(path, f"model {path}")
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ModelError(f"model {path} cannot be read: {error.strerror or error}") from None


def _configure(ray: Any, progress: bool) -> None:
    context = ray.data.DataContext.get_current()
    # Without it, blocks come out in completion order, and out of id order once an actor dies.
    context.execution_options.preserve_order = True
    context.enable_progress_bars = progress and sys.stderr.isatty()
    # Ray Data logs each execution's plan at INFO; the command line prints its own report.
    logging.getLogger("ray.data").setLevel(logging.ERROR)


@dataclass
class _Session:
    start_seconds: float = 0.0
    stop_seconds: float = 0.0


@contextlib.contextmanager
def _session(ray: Any, address: str | None) -> Iterator[_Session]:
    """Ray for the job: joined if this process runs it already, else started (or connected to
    `address`) and shut down at the end."""
    session = _Session()
    if ray.is_initialized():
        yield session
        return
    if address is not None:
        check_address(address)
    started = time.perf_counter()
    try:
        if address is None:
            ray.init(
                num_cpus=os.cpu_count() or 1,
                include_dashboard=False,
                logging_level=logging.ERROR,
                log_to_driver=False,
            )
        else:
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    except Exception as error:  # Ray raises ConnectionError, ValueError, RuntimeError, …
        where = f"at {address}" if address else "locally"
        raise JobFailed(f"cannot start Ray {where}: {_first_line(error)}") from None
    session.start_seconds = time.perf_counter() - started
    try:
        yield session
    finally:
        stopping = time.perf_counter()
        ray.shutdown()
        session.stop_seconds = time.perf_counter() - stopping


def check_address(address: str) -> None:
    """JobFailed at once, rather than after ray.init's minutes of retries, when no gRPC server
    answers at a head node's GCS (HOST:PORT) or Ray Client server (ray://HOST:PORT)."""
    if address in ("auto", "local"):
        return  # Ray finds (or starts) the cluster itself, and fails fast when there is none
    scheme, _, where = address.rpartition("://")
    if scheme not in ("", "ray"):
        return  # another client's address: Ray's to interpret
    host, _, port = where.rpartition(":")
    if not (host and port.isdigit() and int(port) <= 65535):
        raise ScratchnetError(
            f"Ray address {address!r}: expected auto, local, HOST:PORT (a head node's GCS) "
            "or ray://HOST:PORT (its Ray Client server)"
        )
    if scheme:
        expected = "the Ray Client server of a running Ray head node (port 10001 by default)"
    else:
        expected = "the GCS of a running Ray head node (`ray start --head`, port 6379 by default)"
    started = time.monotonic()
    try:
        socket.create_connection((host.strip("[]"), int(port)), CONNECT_SECONDS).close()
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        raise JobFailed(
            f"cannot start Ray at {address}: nothing accepts connections there ({reason}; "
            f"tried for up to {CONNECT_SECONDS:g} s): expected {expected}"
        ) from None
    if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        return  # Ray's TLS (its own variables, as Ray reads them): no plaintext handshake there
    # Both are gRPC servers: something else listening there (an HTTP server, a database) would
    # keep ray.init retrying for minutes too.
    left = max(CONNECT_SECONDS - (time.monotonic() - started), 0.5)
    with grpc.insecure_channel(where) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=left)
        except grpc.FutureTimeoutError:
            raise JobFailed(
                f"cannot start Ray at {address}: something accepts connections there but does "
                f"not answer as a gRPC server (waited {CONNECT_SECONDS:g} s): expected {expected}"
            ) from None


@contextlib.contextmanager
def _job_errors() -> Iterator[None]:
    """A failed job as one line: a ScratchnetError raised in a task as it is (a bad file: a
    mistake), anything else (an actor that died for good, …) as "the Ray job failed"."""
    try:
        yield
    except ScratchnetError:
        raise
    except Exception as error:
        # A task's exception reaches the driver as text inside Ray's own error: Ray Data wraps
        # it (`raise UserCodeException from error`) and pickling drops the chain, so our
        # one-line message is found in the traceback Ray kept.
        found = _SCRATCHNET_ERROR.findall(str(error))
        if found:
            raise ScratchnetError(found[-1]) from None
        raise JobFailed(f"the Ray job failed: {_first_line(error)}") from None


def _first_line(error: BaseException) -> str:
    # Ray colours the names of its workers in messages: keep the text only.
    lines = _COLOUR.sub("", str(error)).strip().splitlines()
    return lines[0] if lines else type(error).__name__
