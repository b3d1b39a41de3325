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
from dataclasses import dataclass, field, replace

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


@dataclass
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


class Statistics:
    """Thread-safe statistics of every model version that has served or failed a request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[tuple[str, str], ModelStatistics] = {}

    def success(self, name: str, version: str, items: int, timing: Timing) -> None:
        """Record a successful request of `items` items (its model ran once for it)."""
        with self._lock:
            stats = self._get(name, version)
            batches = {batch.batch_size: batch for batch in stats.batches}
            batch = batches.get(items, BatchStatistics(items))
            batches[items] = replace(
                batch,
                compute_input=batch.compute_input.plus(timing.compute_input),
                compute_infer=batch.compute_infer.plus(timing.compute_infer),
                compute_output=batch.compute_output.plus(timing.compute_output),
            )
            self._models[name, version] = replace(
                stats,
                last_inference_ms=time.time_ns() // 1_000_000,
                inference_count=stats.inference_count + items,
                execution_count=stats.execution_count + 1,
                success=stats.success.plus(timing.total),
                queue=stats.queue.plus(timing.queue),
                compute_input=stats.compute_input.plus(timing.compute_input),
                compute_infer=stats.compute_infer.plus(timing.compute_infer),
                compute_output=stats.compute_output.plus(timing.compute_output),
                batches=tuple(batches[size] for size in sorted(batches)),
            )

    def failure(self, name: str, version: str, timing: Timing) -> None:
        """Record a request to this model version that failed."""
        with self._lock:
            stats = self._get(name, version)
            self._models[name, version] = replace(stats, fail=stats.fail.plus(timing.total))

    def of(self, models: Iterable[tuple[str, str]]) -> list[ModelStatistics]:
        """The statistics of each (name, version), zero for those without any request yet."""
        with self._lock:
            return [self._models.get(key, ModelStatistics(*key)) for key in models]

    def _get(self, name: str, version: str) -> ModelStatistics:
        return self._models.get((name, version), ModelStatistics(name, version))
