"""`python -m clients.perf`: load a server with inference calls and report how fast it answers.

Like Triton's perf_analyzer: every request is built and serialised once before the run and sent as
bytes, N calls in flight, for a warm-up and then a measuring window; prints requests/s, images/s,
latency percentiles, errors by status code and the client's own CPU time per request. Speaks
scratchnet.v1 (Predict) and the Open Inference Protocol (ModelInfer with raw_input_contents), so it
measures any KServe v2 server. Also a library: bench/serving.py drives peer servers with it.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from argparse import ArgumentTypeError
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import grpc
import grpc.aio
import numpy as np
from numpy.typing import NDArray

from clients.cli import add_server_flags, security_options
from clients.credentials import PLAINTEXT, Credentials
from clients.errors import from_rpc_error
from clients.shared_memory import Region, registered
from clients.targets import open_aio_channel, open_channel, parse_targets
from scratchnet.api.inference import open_inference_grpc_pb2 as oip
from scratchnet.api.v1 import classifier_pb2 as v1
from scratchnet.cli import ArgumentParser, integer, non_negative_number, positive_number, run_cli
from scratchnet.datasets import load_dataset
from scratchnet.errors import ClientError, ScratchnetError

__all__ = [
    "APIS",
    "MISMATCH",
    "Measurement",
    "ModelSpec",
    "Plan",
    "Stability",
    "build_plan",
    "describe",
    "in_shared_memory",
    "main",
    "measure",
    "measure_until_stable",
    "wait_answering",
]

PROGRAM = "python -m clients.perf"
APIS = {
    "v1": "/scratchnet.v1.Classifier/Predict",
    "v2": "/inference.GRPCInferenceService/ModelInfer",
}
"""The inference method each API is measured with."""
MISMATCH = "MISMATCH"
"""The error counted for an OK reply that differs from the first reply to the same request."""
DEFAULT_OUTPUTS = ("label", "scores")
# A few different requests, sent in turn, so that no cache of one answer flatters the server.
MAX_CONCURRENCY = 4096
"""Most calls in flight (the server's default --max-concurrent-rpcs): each is a task and its
buffers, so a typo of 100000000 would fill memory instead of measuring."""
MAX_WINDOWS = 10
"""--stability gives up after this many windows unless --max-windows says otherwise."""

DISTINCT_REQUESTS = 8
SEED = 0
# Datatype names of the Open Inference Protocol -> little-endian numpy dtypes, for the tensors
# perf sends (UINT8, FP32) and the outputs it decodes.
_NUMPY: dict[str, np.dtype[Any]] = {
    "UINT8": np.dtype("u1"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
_DTYPE_FLAGS = {"uint8": "UINT8", "float32": "FP32"}
_SENDABLE = tuple(_DTYPE_FLAGS.values())
_V1_DATATYPES = {v1.DATA_TYPE_UINT8: "UINT8", v1.DATA_TYPE_FLOAT32: "FP32"}
_V1_ENUMS = {name: enum for enum, name in _V1_DATATYPES.items()}
# Replies as large as the server makes them; requests as large as the batch asks.
_CHANNEL_OPTIONS: list[tuple[str, int | str]] = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
]


@dataclass(frozen=True)
class ModelSpec:
    """What requests need to know about the served model, as its server describes it."""

    name: str
    version: str
    input_name: str
    image_dims: tuple[int, ...]
    """One image's dimensions, the input's shape without the batch axis, e.g. (28, 28)."""
    datatypes: tuple[str, ...]
    """Input datatypes accepted (OIP names, e.g. "FP32"), the model's own first."""
    outputs: tuple[str, ...]
    max_batch: int = 0
    """Most images per request (0: the server does not say)."""


@dataclass(frozen=True)
class Plan:
    """Requests serialised once before a run, and the images each carries."""

    api: str
    requests: tuple[bytes, ...]
    images: tuple[NDArray[Any], ...]
    datatype: str
    outputs: tuple[str, ...]
    model: str = ""
    version: str = ""

    @property
    def method(self) -> str:
        """The gRPC method the requests go to."""
        return APIS[self.api]

    @property
    def batch(self) -> int:
        """Images per request."""
        return len(self.images[0])

    def decode(self, reply: bytes) -> dict[str, NDArray[Any]]:
        """The output arrays of one serialised reply, by output name."""
        if self.api == "v1":
            return _decode_v1(v1.PredictResponse.FromString(reply))
        return _decode_v2(oip.ModelInferResponse.FromString(reply))


@dataclass
class Measurement:
    """What one run observed in its measuring window."""

    batch: int
    concurrency: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)
    """The first message of each error code, which says why the calls failed."""
    cpu_seconds: float = 0.0
    server: dict[str, float] | None = None
    """The server's own averages over the window, from its statistics (ms per request), when it
    has Triton's statistics extension."""
    first_replies: dict[int, bytes] = field(default_factory=dict)
    """The first OK reply to each request (by index), which every later reply must equal."""

    @classmethod
    def combined(cls, windows: Sequence[Measurement]) -> Measurement:
        """One measurement of several windows of the same run, as if they were one."""
        first = windows[0]
        whole = cls(first.batch, first.concurrency, sum(w.seconds for w in windows))
        for window in windows:
            whole.latencies.extend(window.latencies)
            for code, count in window.errors.items():
                whole.errors[code] = whole.errors.get(code, 0) + count
            for code, message in window.messages.items():
                whole.messages.setdefault(code, message)
            whole.cpu_seconds += window.cpu_seconds
        whole.first_replies = first.first_replies
        served = [w.server for w in windows if w.server]
        if len(served) == len(windows):  # the server's figures of every window, weighted
            answered = sum(figures["requests"] for figures in served)
            whole.server = {
                key: sum(f[key] * f["requests"] for f in served) / answered for key in served[0]
            }
            whole.server["requests"] = answered
        return whole

    @property
    def requests(self) -> int:
        """Calls answered OK."""
        return len(self.latencies)

    @property
    def error_count(self) -> int:
        """Calls that failed or answered differently from before."""
        return sum(self.errors.values())

    def summary(self) -> dict[str, Any]:
        """The figures, JSON-ready: rates per second, latencies in ms, client CPU."""
        calls = self.requests + self.error_count
        per_second = 1 / self.seconds if self.seconds > 0 else 0.0
        latency: dict[str, float] = {}
        if self.latencies:
            ms = np.percentile(self.latencies, [50, 90, 95, 99, 100]) * 1000
            latency = dict(zip(("p50", "p90", "p95", "p99", "max"), ms.tolist(), strict=True))
            latency["mean"] = float(np.mean(self.latencies)) * 1000
        return {
            "batch": self.batch,
            "concurrency": self.concurrency,
            "seconds": self.seconds,
            "requests": self.requests,
            "requests_per_second": self.requests * per_second,
            "images_per_second": self.requests * self.batch * per_second,
            "latency_ms": latency,
            "errors": self.error_count,
            "errors_by_code": dict(sorted(self.errors.items())),
            "error_messages": dict(sorted(self.messages.items())),
            "client_cpu_seconds": self.cpu_seconds,
            # Per call made, answered or failed: what one call costs the client.
            "client_cpu_ms_per_request": self.cpu_seconds * 1000 / calls if calls else None,
            "client_cpu_cores": self.cpu_seconds * per_second,
            "server_ms": self.server,
        }


def describe(
    target: str,
    api: str,
    model: str | None = None,
    version: str = "",
    timeout: float = 10.0,
    credentials: Credentials = PLAINTEXT,
) -> ModelSpec:
    """Ask the server at `target` about its model: v1 GetModelInfo, v2 ModelMetadata (the model's
    name from v1 GetModelInfo when `model` is None)."""
    metadata = credentials.metadata
    with _channel(target, credentials) as channel:
        try:
            if api == "v1":
                return _describe_v1(channel, timeout, metadata, model or "", version)
            if model is None:  # the server's default model, as v1 names it
                model = _describe_v1(channel, timeout, metadata, "", "").name
            return _describe_v2(channel, model, version, timeout, metadata)
        except grpc.RpcError as error:
            if isinstance(error, grpc.Call) and error.code() == grpc.StatusCode.UNIMPLEMENTED:
                raise ClientError(_unimplemented(target, api, model), error.code()) from None
            raise from_rpc_error(error, target, timeout, credentials=credentials) from None


def _unimplemented(target: str, api: str, model: str | None) -> str:
    if api == "v1":
        return (
            f"the server at {target} does not implement scratchnet.v1.Classifier: "
            "for an Open Inference Protocol server, pass --api v2"
        )
    if model is None:
        return (
            f"the server at {target} has no scratchnet.v1.Classifier to say its model's name: "
            "pass --model NAME"
        )
    return f"the server at {target} does not implement the Open Inference Protocol's ModelMetadata"


def build_plan(
    spec: ModelSpec,
    api: str,
    batch: int,
    *,
    datatype: str | None = None,
    outputs: Sequence[str] = DEFAULT_OUTPUTS,
    pixels: NDArray[np.uint8] | None = None,
    count: int = DISTINCT_REQUESTS,
) -> Plan:
    """`count` requests of `batch` images each: `pixels` (uint8 [N, *image_dims], cycled) or
    random pixels from a fixed seed, sent as `datatype` (default: the model's own).

    v1 lists every datatype the server accepts; v2 metadata gives only the model's own, so v2
    sends another datatype asked for as it is, and the server decides."""
    datatype = datatype or spec.datatypes[0]
    if datatype not in spec.datatypes and (api == "v1" or datatype not in _SENDABLE):
        raise ScratchnetError(
            f"model '{spec.name}' takes {' or '.join(spec.datatypes)} images, not {datatype}"
        )
    if datatype not in _SENDABLE:
        raise ScratchnetError(f"perf sends UINT8 or FP32 images, not {datatype}")
    unknown = [name for name in outputs if name not in spec.outputs]
    if unknown or not outputs:
        raise ScratchnetError(
            f"model '{spec.name}' has no output {', '.join(map(repr, unknown)) or 'asked for'}: "
            f"expected some of {', '.join(spec.outputs)}"
        )
    if spec.max_batch and batch > spec.max_batch:
        raise ScratchnetError(
            f"batch {batch} is more than the server takes in one request ({spec.max_batch})"
        )
    item_bytes = math.prod(spec.image_dims) * np.dtype(_NUMPY[datatype]).itemsize
    if batch * item_bytes > _MAX_REQUEST_BYTES:
        raise ScratchnetError(
            f"batch {batch} takes {batch * item_bytes:,} bytes a request, more than perf sends "
            f"({_MAX_REQUEST_BYTES:,}): send a smaller batch"
        )
    if pixels is None:
        rng = np.random.default_rng(SEED)
        pixels = rng.integers(0, 256, size=(count * batch, *spec.image_dims), dtype=np.uint8)
    elif pixels.shape[1:] != spec.image_dims:
        raise ScratchnetError(
            f"the images are {list(pixels.shape[1:])}, model '{spec.name}' takes "
            f"{list(spec.image_dims)}"
        )
    index = np.arange(count * batch) % len(pixels)
    chunks = [pixels[index[start : start + batch]] for start in range(0, len(index), batch)]
    images = tuple(_as_datatype(chunk, datatype) for chunk in chunks)
    encode = _request_v1 if api == "v1" else _request_v2
    requests = tuple(encode(spec, chunk, datatype, outputs) for chunk in images)
    return Plan(api, requests, images, datatype, tuple(outputs), spec.name, spec.version)


def in_shared_memory(plan: Plan, spec: ModelSpec) -> tuple[Plan, list[Region]]:
    """The plan with each request's images in a shared-memory region of its own (Triton's
    system shared-memory extension; v2 only, the server on this host), and the regions, to
    register with `clients.shared_memory.registered`."""
    if plan.api != "v2":
        raise ScratchnetError("shared memory belongs to the Open Inference Protocol: use --api v2")
    regions, requests = [], []
    for index, images in enumerate(plan.images):
        region = Region(f"perf-{os.getpid()}-{index}", images.nbytes)
        region.write(images.tobytes())
        regions.append(region)
        requests.append(_request_v2(spec, images, plan.datatype, plan.outputs, region))
    return replace(plan, requests=tuple(requests)), regions


def measure(
    target: str,
    plan: Plan,
    *,
    concurrency: int = 1,
    duration: float = 10.0,
    warmup: float = 1.0,
    timeout: float = 30.0,
    credentials: Credentials = PLAINTEXT,
    check_replies: bool = True,
) -> Measurement:
    """Keep `concurrency` calls in flight for `warmup` + `duration` seconds, the plan's requests
    in turn; figures come from the calls started after the warm-up. `check_replies`: an OK
    reply that differs from the first to the same request counts as an error (MISMATCH)."""
    return asyncio.run(
        _measure(target, plan, concurrency, duration, warmup, timeout, credentials, check_replies)
    )


@dataclass(frozen=True)
class Stability:
    """perf_analyzer's stability passes: windows until the last three agree."""

    percent: float
    """The last three windows' throughputs and mean latencies within this of their mean."""
    max_windows: int = MAX_WINDOWS


def measure_until_stable(
    target: str, plan: Plan, stability: Stability, **options: Any
) -> tuple[Measurement, int, bool]:
    """Measure windows of `options["duration"]` (the warm-up before the first only) until the
    last three are stable or `stability.max_windows` have run; the last three combined, how many
    windows ran, and whether they were stable."""
    windows: list[Measurement] = []
    warmup = options.pop("warmup", 1.0)
    while len(windows) < max(stability.max_windows, 3):
        windows.append(measure(target, plan, warmup=warmup if not windows else 0.0, **options))
        if len(windows) >= 3 and _agree(windows[-3:], stability.percent):
            return Measurement.combined(windows[-3:]), len(windows), True
    return Measurement.combined(windows[-3:]), len(windows), False


def _agree(windows: Sequence[Measurement], percent: float) -> bool:
    """Whether the windows' throughputs, and their mean latencies, are each within `percent` of
    their own mean (perf_analyzer's test)."""
    if any(not window.latencies or window.seconds <= 0 for window in windows):
        return False
    for figures in (
        [window.requests / window.seconds for window in windows],
        [float(np.mean(window.latencies)) for window in windows],
    ):
        mean = sum(figures) / len(figures)
        if any(abs(value - mean) > mean * percent / 100 for value in figures):
            return False
    return True


def wait_answering(
    target: str,
    plan: Plan,
    timeout: float,
    check: Callable[[], None] | None = None,
    credentials: Credentials = PLAINTEXT,
) -> None:
    """Send the plan's first request until the server answers it OK, calling `check` (which may
    raise) before each try; ClientError with the last failure after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    with _channel(target, credentials) as channel:
        call = channel.unary_unary(plan.method, None, None)
        while True:
            if check is not None:
                check()
            try:
                wait = max(0.1, min(5.0, deadline - time.monotonic()))
                call(plan.requests[0], timeout=wait, metadata=credentials.metadata)
                return
            except grpc.RpcError as error:
                if time.monotonic() > deadline:
                    raise from_rpc_error(error, target, timeout, credentials=credentials) from None
            time.sleep(0.1)


async def _measure(
    target: str,
    plan: Plan,
    concurrency: int,
    duration: float,
    warmup: float,
    timeout: float,
    credentials: Credentials,
    check_replies: bool,
) -> Measurement:
    result = Measurement(plan.batch, concurrency, seconds=0.0)
    requests = plan.requests
    start = time.perf_counter()
    window = start + warmup
    end = window + duration
    cpu_at_window: list[float] = []
    last_done = window

    async def caller(first: int) -> None:
        nonlocal last_done
        index = first
        while (began := time.perf_counter()) < end:
            if began >= window and not cpu_at_window:
                cpu_at_window.append(time.process_time())
            key = index % len(requests)
            index += concurrency
            try:
                reply = await call(requests[key], timeout=timeout, metadata=metadata)
                first_reply = result.first_replies.setdefault(key, reply)
                mismatch = check_replies and reply != first_reply
                code, message = (MISMATCH, _MISMATCH_MESSAGE) if mismatch else (None, "")
            except grpc.aio.AioRpcError as error:
                code, message = error.code().name, error.details() or ""
            done = time.perf_counter()
            if code == "UNAVAILABLE":
                # A server that is down or going answers at once: don't spin on it.
                await asyncio.sleep(_UNAVAILABLE_PAUSE)
            if began < window:
                continue
            last_done = max(last_done, done)
            if code is None:
                result.latencies.append(done - began)
            else:
                result.errors[code] = result.errors.get(code, 0) + 1
                result.messages.setdefault(code, message)

    metadata = credentials.metadata
    targets = parse_targets(target)
    async with open_aio_channel(targets, credentials, _CHANNEL_OPTIONS) as channel:
        call = channel.unary_unary(plan.method, None, None)
        # One server's statistics only: two readings from different replicas would not subtract.
        statistics = _ServerStatistics(channel, plan, metadata, timeout)
        before = None
        if targets.replicas == 1:
            before = asyncio.ensure_future(statistics.after(warmup))
        await asyncio.gather(*(caller(first) for first in range(concurrency)))
        if before is not None:
            result.server = statistics.difference(await before, await statistics.after(0))
    # Calls still in flight at the end are waited for, so the window closes with the last answer.
    result.seconds = last_done - window
    result.cpu_seconds = time.process_time() - (cpu_at_window or [time.process_time()])[0]
    return result


_MISMATCH_MESSAGE = (
    "an OK reply differed from the first reply to the same request (a model whose answers vary "
    "from call to call: --no-check-replies)"
)
_MAX_REQUEST_BYTES = 1 << 30
"""The largest request perf builds (a gigabyte of images): protobuf's own limit is 2 GB."""
_UNAVAILABLE_PAUSE = 0.1
"""Seconds a caller waits after an UNAVAILABLE answer before its next call."""
_STAGES = ("queue", "compute_input", "compute_infer", "compute_output")


class _ServerStatistics:
    """The model's statistics as the server counts them (Triton's statistics extension), read
    at the window's start and end: where a request's time went inside the server."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        plan: Plan,
        metadata: tuple[tuple[str, str], ...],
        timeout: float,
    ) -> None:
        self._call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelStatistics",
            oip.ModelStatisticsRequest.SerializeToString,
            oip.ModelStatisticsResponse.FromString,
        )
        self._request = oip.ModelStatisticsRequest(name=plan.model, version=plan.version)
        self._metadata = metadata
        self._timeout = min(timeout, 10.0)

    async def after(self, seconds: float) -> Any:
        """The model's statistics `seconds` from now; None if the server has none to give."""
        await asyncio.sleep(seconds)
        try:
            reply = await self._call(self._request, timeout=self._timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError:
            return None  # not a server with the extension, or not this model's: no server figures
        return reply.model_stats[0] if len(reply.model_stats) == 1 else None

    @staticmethod
    def difference(before: Any, after: Any) -> dict[str, float] | None:
        """Milliseconds per successful request between the two readings, by stage and in all."""
        if before is None or after is None:
            return None
        count = after.inference_stats.success.count - before.inference_stats.success.count
        if count <= 0:
            return None
        figures = {"requests": float(count)}
        for stage in ("success", *_STAGES):
            elapsed = (
                getattr(after.inference_stats, stage).ns - getattr(before.inference_stats, stage).ns
            )
            figures["total" if stage == "success" else stage] = elapsed / count / 1e6
        return figures


def _channel(target: str, credentials: Credentials) -> grpc.Channel:
    """A channel to `target` (replicas get round robin and retries), over TLS if told."""
    return open_channel(parse_targets(target), credentials, _CHANNEL_OPTIONS)


def _describe_v1(
    channel: grpc.Channel,
    timeout: float,
    metadata: tuple[tuple[str, str], ...],
    model: str,
    version: str,
) -> ModelSpec:
    call = channel.unary_unary(
        "/scratchnet.v1.Classifier/GetModelInfo",
        v1.GetModelInfoRequest.SerializeToString,
        v1.GetModelInfoResponse.FromString,
    )
    request = v1.GetModelInfoRequest(model_name=model, model_version=version)
    info: v1.GetModelInfoResponse = call(request, timeout=timeout, metadata=metadata)
    return ModelSpec(
        name=info.model_name,
        version=info.model_version,
        input_name="images",  # v1 carries no input name
        image_dims=_image_dims(info.model_name, "images", info.input_shape),
        datatypes=tuple(_V1_DATATYPES.get(dtype, str(dtype)) for dtype in info.input_dtypes),
        outputs=tuple(info.outputs),
        max_batch=int(info.max_batch_size),
    )


def _describe_v2(
    channel: grpc.Channel,
    model: str,
    version: str,
    timeout: float,
    metadata: tuple[tuple[str, str], ...],
) -> ModelSpec:
    call = channel.unary_unary(
        "/inference.GRPCInferenceService/ModelMetadata",
        oip.ModelMetadataRequest.SerializeToString,
        oip.ModelMetadataResponse.FromString,
    )
    meta: oip.ModelMetadataResponse = call(
        oip.ModelMetadataRequest(name=model, version=version), timeout=timeout, metadata=metadata
    )
    if len(meta.inputs) != 1:
        names = ", ".join(repr(tensor.name) for tensor in meta.inputs)
        raise ScratchnetError(
            f"model '{model}' has {len(meta.inputs)} inputs ({names}): perf sends one, the images"
        )
    image = meta.inputs[0]
    return ModelSpec(
        name=meta.name or model,
        version=version or (meta.versions[0] if meta.versions else ""),
        input_name=image.name,
        image_dims=_image_dims(model, image.name, image.shape),
        datatypes=(image.datatype,),
        outputs=tuple(tensor.name for tensor in meta.outputs),
        max_batch=_max_batch_v2(channel, model, version, timeout, metadata),
    )


def _max_batch_v2(
    channel: grpc.Channel,
    model: str,
    version: str,
    timeout: float,
    metadata: tuple[tuple[str, str], ...],
) -> int:
    """The model's max_batch_size from its configuration (Triton's model configuration
    extension); 0 from a server that does not say."""
    call = channel.unary_unary(
        "/inference.GRPCInferenceService/ModelConfig",
        oip.ModelConfigRequest.SerializeToString,
        oip.ModelConfigResponse.FromString,
    )
    try:
        reply = call(oip.ModelConfigRequest(name=model, version=version), timeout=timeout,
                     metadata=metadata)  # fmt: skip
    except grpc.RpcError:
        return 0  # not every KServe v2 server has the extension: the server will decide
    return int(reply.config.max_batch_size)


def _image_dims(model: str, name: str, shape: Sequence[int]) -> tuple[int, ...]:
    dims = tuple(int(size) for size in shape[1:])
    if len(shape) < 2 or shape[0] != -1 or any(size < 1 for size in dims):
        raise ScratchnetError(
            f"input '{name}' of model '{model}' has shape {list(shape)}: perf needs a variable "
            "batch axis and fixed image dimensions, e.g. [-1,28,28]"
        )
    return dims


def _api_name(api: str) -> str:
    return "scratchnet.v1.Classifier" if api == "v1" else "the Open Inference Protocol"


def _as_datatype(pixels: NDArray[np.uint8], datatype: str) -> NDArray[Any]:
    if datatype == "UINT8":
        return pixels
    if datatype == "FP32":
        # Pixels in [0, 1], as the models exported here (and MNIST models generally) take them.
        return (pixels / np.float32(255)).astype("<f4")
    raise ValueError(datatype)  # build_plan sends only _SENDABLE ones


def _request_v1(
    spec: ModelSpec, images: NDArray[Any], datatype: str, outputs: Sequence[str]
) -> bytes:
    tensor = v1.Tensor(dtype=_V1_ENUMS[datatype], shape=images.shape, data=images.tobytes())
    request = v1.PredictRequest(
        images=tensor,
        return_scores="scores" in outputs,
        return_probabilities="probabilities" in outputs,
        model_name=spec.name,
        model_version=spec.version,
    )
    return request.SerializeToString()


def _request_v2(
    spec: ModelSpec,
    images: NDArray[Any],
    datatype: str,
    outputs: Sequence[str],
    region: Region | None = None,
) -> bytes:
    tensor = oip.ModelInferRequest.InferInputTensor(
        name=spec.input_name, datatype=datatype, shape=images.shape
    )
    if region is not None:
        tensor.parameters["shared_memory_region"].string_param = region.name
        tensor.parameters["shared_memory_byte_size"].int64_param = images.nbytes
    request = oip.ModelInferRequest(
        model_name=spec.name,
        model_version=spec.version,
        inputs=[tensor],
        outputs=[oip.ModelInferRequest.InferRequestedOutputTensor(name=name) for name in outputs],
        raw_input_contents=[] if region is not None else [images.tobytes()],
    )
    return request.SerializeToString()


def _decode_v1(reply: v1.PredictResponse) -> dict[str, NDArray[Any]]:
    arrays: dict[str, NDArray[Any]] = {"label": np.array(reply.labels, dtype=np.int64)}
    for name in ("scores", "probabilities"):
        values = getattr(reply, name)
        if len(values):
            arrays[name] = np.array(values, dtype=np.float32).reshape(len(reply.labels), -1)
    return arrays


def _decode_v2(reply: oip.ModelInferResponse) -> dict[str, NDArray[Any]]:
    arrays: dict[str, NDArray[Any]] = {}
    for index, tensor in enumerate(reply.outputs):
        dtype = _NUMPY.get(tensor.datatype)
        if dtype is None:
            raise ScratchnetError(f"output '{tensor.name}': perf cannot read {tensor.datatype}")
        if index < len(reply.raw_output_contents):
            values = np.frombuffer(reply.raw_output_contents[index], dtype=dtype)
        else:
            # Typed contents: the field that carries the datatype is the one that is set.
            contents = tensor.contents
            typed = [getattr(contents, f.name) for f, _ in contents.ListFields()]
            values = np.array(typed[0] if typed else [], dtype=dtype)
        arrays[tensor.name] = values.reshape(tuple(tensor.shape))
    return arrays


def main() -> None:
    """The command line; see --help."""
    run_cli(PROGRAM, _main)


def _main() -> int:
    parser = ArgumentParser(
        prog=PROGRAM,
        description="Load a scratchnet or Open Inference Protocol server with inference calls "
        "and report throughput, latency, errors and the client's own CPU time. Exit code 0; 1 "
        "if any call failed; 2 for a mistake found before the run (a flag, a file, the server "
        "or model not reachable).",
    )
    add_server_flags(parser, "deadline of each call")
    parser.add_argument(
        "--api",
        choices=tuple(APIS),
        default="v1",
        help="v1: scratchnet.v1 Predict; v2: Open Inference Protocol ModelInfer (default: v1)",
    )
    parser.add_argument("--model", metavar="NAME", help="default: the model the server reports")
    parser.add_argument("--version", default="", help="model version (default: the served one)")
    parser.add_argument(
        "--batch", type=integer(1), default=1, metavar="B", help="images per request (default 1)"
    )
    levels = parser.add_mutually_exclusive_group()
    levels.add_argument(
        "--concurrency",
        type=integer(1, MAX_CONCURRENCY),
        default=1,
        metavar="N",
        help=f"calls in flight, at most {MAX_CONCURRENCY} (default 1)",
    )
    levels.add_argument(
        "--concurrency-range",
        type=_concurrency_range,
        metavar="START[:END[:STEP]]",
        help="measure at START, START+STEP, ... up to END calls in flight in turn, as "
        "perf_analyzer's --concurrency-range, and end with a table of them (STEP default 1)",
    )
    parser.add_argument(
        "--duration",
        type=positive_number,
        default=10.0,
        metavar="S",
        help="measuring window in seconds (default 10)",
    )
    parser.add_argument(
        "--warmup",
        type=non_negative_number,
        default=1.0,
        metavar="S",
        help="seconds of calls before the window, not counted (default 1)",
    )
    parser.add_argument(
        "--dtype", choices=tuple(_DTYPE_FLAGS), help="pixel type sent (default: the model's own)"
    )
    parser.add_argument(
        "--outputs",
        type=_names,
        metavar="NAMES",
        help="outputs asked for, comma-separated (default: label,scores when the model has "
        "them, else all of its outputs)",
    )
    parser.add_argument(
        "--data",
        metavar="PATH",
        help="send the test images of this data set (IDX folder or npz; 'mnist': the bundled "
        "MNIST) instead of random pixels",
    )
    parser.add_argument(
        "--shared-memory",
        choices=("none", "system"),
        default="none",
        help="system: send the images through shared memory (/dev/shm) instead of the message "
        "(Triton's extension; --api v2, a server on this host; default: none)",
    )
    parser.add_argument(
        "--stability",
        type=positive_number,
        metavar="PCT",
        help="measure windows of --duration until the last three agree within PCT %% "
        "(throughput and mean latency, as perf_analyzer's --stability-percentage) and report "
        "those three; default: one window",
    )
    parser.add_argument(
        "--max-windows",
        type=integer(3),
        metavar="N",
        help="with --stability: give up after N windows, reporting the last three (default "
        f"{MAX_WINDOWS})",
    )
    parser.add_argument(
        "--no-check-replies",
        action="store_true",
        help="accept any OK reply (by default a reply that differs from the first to the same "
        "request is an error, MISMATCH: a server answering wrongly under load)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object instead (a list of them with --concurrency-range)",
    )
    args = parser.parse_args()
    if args.max_windows is not None and args.stability is None:
        parser.error("--max-windows applies to --stability only")
    parse_targets(args.target)  # a malformed target fails before any call
    credentials = Credentials.of(**security_options(parser, args))
    spec = describe(args.target, args.api, args.model, args.version, args.timeout, credentials)
    datatype = _DTYPE_FLAGS[args.dtype] if args.dtype else None
    outputs = args.outputs
    if outputs is None:
        classifier = all(name in spec.outputs for name in DEFAULT_OUTPUTS)
        outputs = DEFAULT_OUTPUTS if classifier else spec.outputs
    plan = build_plan(
        spec,
        args.api,
        args.batch,
        datatype=datatype,
        outputs=outputs,
        pixels=_dataset_pixels(args.data) if args.data else None,
    )
    regions: list[Region] = []
    if args.shared_memory == "system":
        plan, regions = in_shared_memory(plan, spec)
    options: dict[str, Any] = {
        "concurrency": args.concurrency,
        "duration": args.duration,
        "warmup": args.warmup,
        "timeout": args.timeout,
        "credentials": credentials,
        "check_replies": not args.no_check_replies,
    }
    reports: list[dict[str, Any]] = []
    with registered(args.target, regions, args.timeout, credentials):
        for level in args.concurrency_range or [args.concurrency]:
            windows, stable = 1, None
            options["concurrency"] = level
            if args.stability is None:
                result = measure(args.target, plan, **options)
            else:
                stability = Stability(args.stability, args.max_windows or MAX_WINDOWS)
                result, windows, stable = measure_until_stable(
                    args.target, plan, stability, **options
                )
            if result.requests + result.error_count == 0:
                raise ClientError(
                    f"no call to {args.target} finished within the {args.duration:g} s "
                    f"({level} in flight)"
                )
            report = {
                "target": args.target,
                "api": args.api,
                "model": {"name": spec.name, "version": spec.version},
                "input": {
                    "name": spec.input_name,
                    "datatype": plan.datatype,
                    "dims": spec.image_dims,
                },
                "outputs": list(plan.outputs),
                "shared_memory": args.shared_memory,
                "warmup_seconds": args.warmup,
                "windows": windows,
                "stability_percent": args.stability,
                "stable": stable,
                **result.summary(),
            }
            reports.append(report)
            if not args.json:
                # Each level as it ends: a sweep takes a while.
                print(("\n" if len(reports) > 1 else "") + _text(report), flush=True)
    if args.json:
        # One level: its report; a sweep: the list of them, as perf_analyzer's CSV has a row each.
        print(json.dumps(reports if args.concurrency_range else reports[0], indent=2))
    elif args.concurrency_range:
        print("\n" + _sweep_table(reports))
    return 1 if any(report["errors"] for report in reports) else 0


def _concurrency_range(text: str) -> list[int]:
    """START[:END[:STEP]] (perf_analyzer's --concurrency-range): the levels START to END."""
    parts = text.split(":")
    expected = (
        f"expected START[:END[:STEP]], integers with 1 <= START <= END and STEP >= 1, got {text!r}"
    )
    if len(parts) > 3 or not all(part.isdigit() for part in parts):
        raise ArgumentTypeError(expected)
    start = int(parts[0])
    end = int(parts[1]) if len(parts) > 1 else start
    step = int(parts[2]) if len(parts) > 2 else 1
    if not 1 <= start <= end or step < 1:
        raise ArgumentTypeError(expected)
    if end > MAX_CONCURRENCY:
        raise ArgumentTypeError(f"END is {end}: at most {MAX_CONCURRENCY} calls in flight")
    if (end - start) // step + 1 > _MAX_LEVELS:
        raise ArgumentTypeError(
            f"{text!r} makes more than {_MAX_LEVELS} levels: take a larger STEP"
        )
    return list(range(start, end + 1, step))


def _sweep_table(reports: Sequence[dict[str, Any]]) -> str:
    """One row per concurrency level, as perf_analyzer's summary ends a sweep."""
    lines = [
        "concurrency  requests/s    images/s    p50 ms    p99 ms  client CPU ms/call  errors",
    ]
    for report in reports:
        latency = report["latency_ms"]
        cpu = report["client_cpu_ms_per_request"]
        lines.append(
            f"{report['concurrency']:>11}  {report['requests_per_second']:>10,.1f}  "
            f"{report['images_per_second']:>10,.0f}  {latency.get('p50', math.nan):>8.3f}  "
            f"{latency.get('p99', math.nan):>8.3f}  "
            f"{'n/a' if cpu is None else f'{cpu:.3f}':>18}  {report['errors']:>6,}"
        )
    return "\n".join(lines)


def _names(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    if not names:
        raise ArgumentTypeError(f"expected output names separated by commas, got {text!r}")
    return names


def _dataset_pixels(path: str) -> NDArray[np.uint8]:
    images = load_dataset(None if path == "mnist" else path).test_images
    if images.dtype != np.uint8:
        raise ScratchnetError(f"data set {path}: perf sends uint8 pixels, found {images.dtype}")
    return np.asarray(images, dtype=np.uint8)


def _text(report: dict[str, Any]) -> str:
    latency = report["latency_ms"]
    cpu = report["client_cpu_ms_per_request"]
    dims = ",".join(map(str, report["input"]["dims"]))
    via = " through shared memory" if report["shared_memory"] != "none" else ""
    lines = [
        f"{report['target']} {report['api']}: model '{report['model']['name']}' version "
        f"'{report['model']['version']}', input '{report['input']['name']}' "
        f"{report['input']['datatype']} [{report['batch']},{dims}]{via}, outputs "
        f"{','.join(report['outputs'])}",
        f"{report['concurrency']} call(s) in flight for {report['seconds']:.2f} s after "
        f"{report['warmup_seconds']:g} s of warm-up" + _windows(report),
        f"throughput  {report['requests_per_second']:,.1f} requests/s, "
        f"{report['images_per_second']:,.0f} images/s ({report['requests']:,} requests)",
        "latency     "
        + ", ".join(f"{name} {ms:.3f} ms" for name, ms in latency.items())
        + ("" if latency else "none answered"),
    ]
    server = report["server_ms"]
    if server:
        stages = ", ".join(f"{stage} {server[stage]:.3f}" for stage in _STAGES)
        lines.append(
            f"server      {server['total']:.3f} ms per request in the server: {stages} "
            f"(its statistics, {server['requests']:,.0f} requests)"
        )
    errors = report["errors_by_code"]
    lines.append("errors      " + (", ".join(f"{c} {n:,}" for c, n in errors.items()) or "none"))
    for code, message in report["error_messages"].items():
        lines.append(f"  first {code}: {message}")
    if cpu is None:
        lines.append("client CPU  n/a")
    else:
        busy = report["client_cpu_cores"] >= _BUSY_CLIENT
        lines.append(
            f"client CPU  {cpu:.3f} ms per call, {report['client_cpu_cores']:.2f} cores"
            + (" (near a whole core: the client may be the bottleneck)" if busy else "")
        )
    return "\n".join(lines)


def _windows(report: dict[str, Any]) -> str:
    """What the stability passes found, for the report's second line ("" without them)."""
    if report["stable"] is None:
        return ""
    agreed = f"within {report['stability_percent']:g} %"
    if report["stable"]:
        return f": the last 3 of {report['windows']} windows, which agree {agreed}"
    return f": the last 3 of {report['windows']} windows, NOT stable ({agreed} asked)"


_MAX_LEVELS = 64
"""Most concurrency levels one sweep measures (a typo such as 1:10000 would take hours)."""

_BUSY_CLIENT = 0.8
"""Client cores from which the report warns that the client may be what limits the run."""


if __name__ == "__main__":
    main()
