"""Per-model inference statistics, as Triton's statistics extension reports them.

For each model version: successful and failed requests with their total time, the time spent
queued, preparing inputs, running the model and producing outputs, how many items were inferred
and how many times the model ran, per batch size too. Counters only grow; a model version that
is unloaded and loaded again keeps its figures (as long as the process lives).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["BatchStatistics", "Duration", "ModelStatistics", "Statistics", "Timing"]


@dataclass(frozen=True)
class Duration:
    """How many times something happened and how long it took in total."""

    count: int = 0
    ns: int = 0

    def plus(self, ns: int) -> Duration:
        """This duration with one more occurrence of `ns` nanoseconds."""
        return Duration(self.count + 1, self.ns + ns)


@dataclass(frozen=True)
class BatchStatistics:
    """The model runs of one batch size."""

    batch_size: int
    compute_input: Duration = Duration()
    compute_infer: Duration = Duration()
    compute_output: Duration = Duration()


@dataclass(frozen=True)
class ModelStatistics:
    """The figures of one model version."""

    name: str
    version: str
    last_inference_ms: int = 0
    """Milliseconds since the epoch of the last successful request; 0 if none."""
    inference_count: int = 0
    """Items inferred (the batch sizes of successful requests, summed)."""
    execution_count: int = 0
    """Times the model ran (fewer than requests when requests are batched together)."""
    success: Duration = Duration()
    fail: Duration = Duration()
    queue: Duration = Duration()
    compute_input: Duration = Duration()
    compute_infer: Duration = Duration()
    compute_output: Duration = Duration()
    batches: tuple[BatchStatistics, ...] = ()


@dataclass(slots=True)
class Timing:
    """The stages of one request, in nanoseconds, as the data plane measures them."""

    started: int = field(default_factory=time.perf_counter_ns)
    queue: int = 0
    compute_input: int = 0
    compute_infer: int = 0
    compute_output: int = 0

    @property
    def total(self) -> int:
        """Nanoseconds since the request started."""
        return time.perf_counter_ns() - self.started


class _Counters:
    """One model version's figures as they grow, mutated under the lock. Durations are kept
    flat, count then nanoseconds for each stage in `_STAGES` order (and for each batch size,
    for its three compute stages): one list, a few index additions per request."""

    def __init__(self) -> None:
        self.last_inference_ms = 0
        self.inference_count = 0
        self.executions = 0
        self.stages = [0] * (2 * len(_STAGES))
        self.batches: dict[int, list[int]] = {}

    def snapshot(self, name: str, version: str) -> ModelStatistics:
        stages = {
            stage: Duration(*self.stages[2 * i : 2 * i + 2]) for i, stage in enumerate(_STAGES)
        }
        return ModelStatistics(
            name,
            version,
            self.last_inference_ms,
            self.inference_count,
            self.executions,
            **stages,
            batches=tuple(
                BatchStatistics(
                    size, *(Duration(*self.batches[size][i : i + 2]) for i in range(0, 6, 2))
                )
                for size in sorted(self.batches)
            ),
        )


_STAGES = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")


class Statistics:
    """Thread-safe statistics of every model version that has served or failed a request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[tuple[str, str], _Counters] = {}

    def _counters(self, name: str, version: str) -> _Counters:
        counters = self._models.get((name, version))
        if counters is None:
            counters = self._models[name, version] = _Counters()
        return counters

    def success(
        self,
        name: str,
        version: str,
        items: int,
        timing: Timing,
        batch_items: int = 0,
        new_run: bool = True,
    ) -> None:
        """Record a successful request of `items` items, run in a batch of `batch_items` (its own
        size if 0); `new_run`: the first request of its run to be recorded. As Triton's, each
        request adds its own durations, and each run once to the executions and batch sizes."""
        total = timing.total
        ran_with = batch_items or items
        put_in, infer, put_out = timing.compute_input, timing.compute_infer, timing.compute_output
        with self._lock:
            counters = self._counters(name, version)
            counters.last_inference_ms = time.time_ns() // 1_000_000
            counters.inference_count += items
            # Spelled out, in _STAGES order: this runs for every request.
            stages = counters.stages
            stages[0] += 1
            stages[1] += total
            stages[4] += 1
            stages[5] += timing.queue
            stages[6] += 1
            stages[7] += put_in
            stages[8] += 1
            stages[9] += infer
            stages[10] += 1
            stages[11] += put_out
            if not new_run:
                return
            counters.executions += 1
            batch = counters.batches.get(ran_with)
            if batch is None:
                batch = counters.batches[ran_with] = [0] * 6
            batch[0] += 1
            batch[1] += put_in
            batch[2] += 1
            batch[3] += infer
            batch[4] += 1
            batch[5] += put_out

    def failure(self, name: str, version: str, timing: Timing) -> None:
        """Record a request to this model version that failed."""
        total = timing.total
        with self._lock:
            stages = self._counters(name, version).stages
            stages[2] += 1
            stages[3] += total

    def of(self, models: Iterable[tuple[str, str]]) -> list[ModelStatistics]:
        """The statistics of each (name, version), zero for those without any request yet."""
        with self._lock:
            return [
                counters.snapshot(*key)
                if (counters := self._models.get(key))
                else ModelStatistics(*key)
                for key in models
            ]
