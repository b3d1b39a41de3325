"""Running the load: calls kept in flight for a warm-up and a measuring window, what they
observed, perf_analyzer's stability passes, and the server's own statistics over the window."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import numpy as np
from numpy.typing import NDArray

from clients.credentials import PLAINTEXT, Credentials
from clients.errors import from_rpc_error
from clients.perf.model import CHANNEL_OPTIONS, sync_channel
from clients.perf.plan import SEED, Plan
from clients.targets import open_aio_channel, parse_targets
from scratchnet.api.inference import open_inference_grpc_pb2 as oip

__all__ = [
    "DISTRIBUTIONS",
    "LATE_SECONDS",
    "MAX_WINDOWS",
    "MISMATCH",
    "RATE_CONCURRENCY",
    "STAGES",
    "Measurement",
    "Rate",
    "Stability",
    "measure",
    "measure_until_stable",
    "wait_answering",
]

MISMATCH = "MISMATCH"
"""The error counted for an OK reply that differs from the first reply to the same request."""

MAX_WINDOWS = 10
"""--stability gives up after this many windows unless --max-windows says otherwise."""
DISTRIBUTIONS = ("constant", "poisson")
"""How a request rate spaces its calls (perf_analyzer's --request-distribution)."""
LATE_SECONDS = 0.001
"""A scheduled call that starts more than this after its time is counted late: the client held it,
busy or with RATE_CONCURRENCY calls in flight (its latency still counts from the scheduled time)."""
RATE_CONCURRENCY = 1024
"""Most calls in flight at a request rate, a server too slow for it having fallen behind. Below
our server's default stream limit (4,096 a connection): held at that limit, calls ending and
starting raced its count of open streams and it refused some (REFUSED_STREAM, UNAVAILABLE), errors
of perf's own making. A server 1,024 calls behind is seconds behind: more would measure no more."""


@dataclass(frozen=True)
class Rate:
    """Calls started on a schedule, whether or not earlier ones have answered (perf_analyzer's
    request-rate mode): `per_second` on average, evenly spaced or as a Poisson process."""

    per_second: float
    distribution: str = "constant"

    def __post_init__(self) -> None:
        if not (self.per_second > 0 and math.isfinite(self.per_second)):
            raise ValueError(f"a request rate must be a positive number, got {self.per_second}")
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {DISTRIBUTIONS}: {self.distribution!r}")

    def offsets(self) -> Iterator[float]:
        """Each call's start, in seconds from the run's start, without end."""
        for chunk in self._chunks():
            yield from chunk.tolist()

    def count(self, start: float, stop: float) -> int:
        """How many calls the schedule starts from `start` up to (not including) `stop`."""
        if stop <= start:
            return 0
        if self.distribution == "constant":
            return self._before(stop) - self._before(start)
        calls = 0
        for chunk in self._chunks():
            calls += int(np.searchsorted(chunk, stop) - np.searchsorted(chunk, start))
            if chunk[-1] >= stop:
                return calls
        raise AssertionError("a schedule has no end")  # _chunks never ends

    def _before(self, moment: float) -> int:
        """Constant: how many calls start before `moment`, the n with n / per_second < moment
        (ceil(moment * per_second), give or take the rounding of the product)."""
        calls = max(0, math.ceil(moment * self.per_second))
        while calls > 0 and (calls - 1) / self.per_second >= moment:
            calls -= 1
        while calls / self.per_second < moment:
            calls += 1
        return calls

    def _chunks(self) -> Iterator[NDArray[np.float64]]:
        """The offsets, a thousand-odd at a time."""
        if self.distribution == "constant":
            # Multiplied, not summed, so that no rounding adds a call at the window's end.
            for first in itertools.count(0, _CHUNK):
                yield np.arange(first, first + _CHUNK) / self.per_second
        rng = np.random.default_rng(SEED)  # the same schedule on every run
        start = 0.0
        while True:
            gaps = rng.exponential(1 / self.per_second, _CHUNK)
            yield start + np.cumsum(gaps)
            start += float(gaps.sum())


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
    rate: Rate | None = None
    """The schedule calls started on; None: `concurrency` calls kept in flight."""
    late: int = 0
    """Scheduled calls that started later than LATE_SECONDS after their time."""
    scheduled: int = 0
    """Calls the schedule puts in the window: each is answered, fails, or is never sent."""

    @classmethod
    def combined(cls, windows: Sequence[Measurement]) -> Measurement:
        """One measurement of several windows of the same run, as if they were one."""
        first = windows[0]
        whole = cls(first.batch, first.concurrency, sum(w.seconds for w in windows))
        whole.rate = first.rate
        for window in windows:
            whole.late += window.late
            whole.scheduled += window.scheduled
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
            "concurrency": None if self.rate else self.concurrency,
            "request_rate": self.rate.per_second if self.rate else None,
            "request_distribution": self.rate.distribution if self.rate else None,
            "scheduled": self.scheduled if self.rate else None,
            "late": self.late if self.rate else None,
            # Calls the window's end came before: the schedule was behind by then.
            "unsent": self.scheduled - calls if self.rate else None,
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
    rate: Rate | None = None,
) -> Measurement:
    """Keep `concurrency` calls in flight for `warmup` + `duration` seconds, the plan's requests
    in turn; or, with `rate`, start calls on its schedule, at most `concurrency` in flight.
    Figures come from the calls started (or due) after the warm-up. `check_replies`: an OK
    reply that differs from the first to the same request counts as an error (MISMATCH)."""
    return asyncio.run(
        _measure(
            target, plan, concurrency, duration, warmup, timeout, credentials, check_replies, rate
        )
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
    with sync_channel(target, credentials) as channel:
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
    rate: Rate | None,
) -> Measurement:
    result = Measurement(plan.batch, concurrency, seconds=0.0, rate=rate)
    requests = plan.requests
    start = time.perf_counter()
    window = start + warmup
    end = window + duration
    cpu_at_window: list[float] = []
    last_done = window

    async def one(index: int, began: float) -> str | None:
        """Make call `index`, counted from `began` (its start, or its scheduled time); its
        error code, or None."""
        nonlocal last_done
        if began >= window and not cpu_at_window:
            cpu_at_window.append(time.process_time())
        key = index % len(requests)
        try:
            reply = await call(requests[key], timeout=timeout, metadata=metadata)
            first_reply = result.first_replies.setdefault(key, reply)
            mismatch = check_replies and reply != first_reply
            code, message = (MISMATCH, _MISMATCH_MESSAGE) if mismatch else (None, "")
        except grpc.aio.AioRpcError as error:
            code, message = error.code().name, error.details() or ""
        done = time.perf_counter()
        if began >= window:
            last_done = max(last_done, done)
            if code is None:
                result.latencies.append(done - began)
            else:
                result.errors[code] = result.errors.get(code, 0) + 1
                result.messages.setdefault(code, message)
        return code

    async def caller(first: int) -> None:
        index = first
        while (began := time.perf_counter()) < end:
            if await one(index, began) == "UNAVAILABLE":
                # A server that is down or going answers at once: don't spin on it.
                await asyncio.sleep(_UNAVAILABLE_PAUSE)
            index += concurrency

    async def scheduled(rate: Rate) -> None:
        # Latency counts from each call's scheduled time, so a server that falls behind shows
        # in it, rather than slowing the schedule down (coordinated omission).
        slots = asyncio.Semaphore(concurrency)
        calls: set[asyncio.Task[str | None]] = set()

        def finished(task: asyncio.Task[str | None]) -> None:
            calls.discard(task)
            slots.release()

        def expired(due: float) -> bool:
            # Late, and its part of the run (warm-up or window) over: sending it now would only
            # stretch the run, by as long as the schedule is behind, without bound.
            now = time.perf_counter()
            return now - due > LATE_SECONDS and now >= (window if due < window else end)

        for index, offset in enumerate(rate.offsets()):
            if offset >= warmup + duration:
                break
            due = start + offset
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            if not expired(due):
                await slots.acquire()
                if not expired(due):
                    if due >= window:
                        result.late += time.perf_counter() - due > LATE_SECONDS
                    task = asyncio.ensure_future(one(index, due))
                    calls.add(task)
                    task.add_done_callback(finished)
                    continue
                slots.release()
            if due >= window:
                break  # the window is over: the calls still due in it are not sent
        await asyncio.gather(*calls)

    metadata = credentials.metadata
    targets = parse_targets(target)
    async with open_aio_channel(targets, credentials, CHANNEL_OPTIONS) as channel:
        call = channel.unary_unary(plan.method, None, None)
        # One server's statistics only: two readings from different replicas would not subtract.
        statistics = _ServerStatistics(channel, plan, metadata, timeout)
        before = None
        if targets.replicas == 1:
            before = asyncio.ensure_future(statistics.after(warmup))
        if rate is None:
            await asyncio.gather(*(caller(first) for first in range(concurrency)))
        else:
            await scheduled(rate)
        if before is not None:
            result.server = statistics.difference(await before, await statistics.after(0))
    # Calls still in flight at the end are waited for, so the window closes with the last answer;
    # it is never shorter than asked, so that a schedule's throughput is calls over its window.
    result.seconds = max(last_done, end) - window
    if rate is not None:
        result.scheduled = rate.count(warmup, warmup + duration)
    result.cpu_seconds = time.process_time() - (cpu_at_window or [time.process_time()])[0]
    return result


_MISMATCH_MESSAGE = (
    "an OK reply differed from the first reply to the same request (a model whose answers vary "
    "from call to call: --no-check-replies)"
)
_MAX_REQUEST_BYTES = 1 << 30
"""The largest request perf builds (a gigabyte of images): protobuf's own limit is 2 GB."""
_CHUNK = 1024
"""Offsets a schedule draws at a time."""
_UNAVAILABLE_PAUSE = 0.1
"""Seconds a caller waits after an UNAVAILABLE answer before its next call."""
STAGES = ("queue", "compute_input", "compute_infer", "compute_output")


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
        for stage in ("success", *STAGES):
            elapsed = (
                getattr(after.inference_stats, stage).ns - getattr(before.inference_stats, stage).ns
            )
            figures["total" if stage == "success" else stage] = elapsed / count / 1e6
        return figures
